"""Where import and export write: never over a training run's checkpoint (--resume needs its optimizer state), and
an HF export, a folder, never 'into' a file (transformers would write nothing and say nothing)."""

import pytest

from tests.test_llama2c import make_llama2c_file
from tinylm.cli.interop import cli
from tinylm.config import with_architecture
from tinylm.model.gpt import GPT
from tinylm.train.checkpoint import load_checkpoint, load_training_checkpoint, model_checkpoint, save_checkpoint
from tinylm.train.trainer import Trainer


def one_line_error(argv) -> str:
    with pytest.raises(SystemExit) as info:
        cli([str(arg) for arg in argv])
    message = str(info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    return message


@pytest.fixture
def run_folder(tmp_path, make_model, train_config, tokens):
    """A run folder whose last.pt is a training checkpoint, two steps in."""
    train, val = tokens
    Trainer(make_model(), train_config(max_steps=2, warmup_steps=1), train, val, out_dir=tmp_path / "run",
            device="cpu").fit()
    return tmp_path / "run"


def test_import_and_export_never_write_over_a_training_checkpoint(tmp_path, run_folder, tiny_config):
    make_llama2c_file(tmp_path / "model.bin", shared=True)
    llama = tmp_path / "llama.pt"
    save_checkpoint(llama, model_checkpoint(GPT(with_architecture(tiny_config(), "llama"))))
    last = run_folder / "last.pt"
    saved = last.read_bytes()
    for argv in (["import", "--llama2c", tmp_path / "model.bin", "--out", run_folder],
                 ["import", "--llama2c", tmp_path / "model.bin", "--out", last],
                 ["export", "--ckpt", llama, "--out", last, "--format", "llama2c"]):
        message = one_line_error(argv)
        assert message == (f"error: {last} holds a training run (step 2, with the optimizer state that --resume "
                           "needs), which writing there would lose; choose another --out")
        assert last.read_bytes() == saved
    assert load_training_checkpoint(last)["step"] == 2, "the run can still be resumed"

    # Anything else may be written over: a model-only checkpoint (an earlier import), a file that is no checkpoint.
    imported = tmp_path / "imported.pt"
    imported.write_bytes(b"not a checkpoint")
    for _ in range(2):
        cli(["import", "--llama2c", str(tmp_path / "model.bin"), "--out", str(imported)])
        assert load_checkpoint(imported)["source"] == f"llama2.c: {tmp_path / 'model.bin'}"


def test_an_hf_export_refuses_a_file_in_the_way_and_a_llama2c_export_into_a_folder_writes_model_bin(
        tmp_path, run_folder, tiny_config):
    pytest.importorskip("transformers")
    in_the_way = tmp_path / "notes.txt"
    in_the_way.write_text("mine")
    for out in (in_the_way, run_folder / "last.pt"):
        message = one_line_error(["export", "--ckpt", run_folder, "--out", out])
        assert message == f"error: --out {out}: {out} is a file, not a folder; choose another --out"
    assert in_the_way.read_text() == "mine"

    llama = tmp_path / "llama.pt"
    save_checkpoint(llama, model_checkpoint(GPT(with_architecture(tiny_config(), "llama"))))
    (tmp_path / "bins").mkdir()
    cli(["export", "--ckpt", str(llama), "--out", str(tmp_path / "bins"), "--format", "llama2c"])
    assert [path.name for path in (tmp_path / "bins").iterdir()] == ["model.bin"]


def test_a_file_export_to_a_path_ending_in_a_slash_makes_that_folder_and_writes_into_it(tmp_path, tiny_config):
    """Before, `--out new/` (no such folder yet) wrote a FILE named new: a trailing slash says a folder, as an
    existing folder does; a path without one is the file itself."""
    llama = tmp_path / "llama.pt"
    save_checkpoint(llama, model_checkpoint(GPT(with_architecture(tiny_config(), "llama"))))
    cli(["export", "--ckpt", str(llama), "--out", f"{tmp_path / 'new' / 'deeper'}/", "--format", "llama2c"])
    assert [path.name for path in (tmp_path / "new" / "deeper").iterdir()] == ["model.bin"]
    cli(["export", "--ckpt", str(llama), "--out", str(tmp_path / "plain"), "--format", "llama2c"])
    assert (tmp_path / "plain").is_file()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_an_hf_export_that_fills_the_disk_is_one_line_and_leaves_the_folder_as_it_was(tmp_path, tiny_config, arch):
    """On main before this layout, a full disk ended the export in a safetensors traceback, with a config.json of the
    new model beside nothing."""
    from tests.helpers import mounted_tmpfs

    ckpt = tmp_path / "model.pt"
    model = GPT(with_architecture(tiny_config(), arch))
    save_checkpoint(ckpt, model_checkpoint(model))
    with mounted_tmpfs(tmp_path / "disk", "64k") as disk:
        (disk / "config.json").write_text('{"earlier": "export"}')
        message = one_line_error(["export", "--ckpt", ckpt, "--format", "hf", "--out", disk])
        assert message.startswith(f"error: No space left on device: {disk}; the disk is full")
        assert {p.name: p.read_text() for p in disk.iterdir()} == {"config.json": '{"earlier": "export"}'}
