"""Hand-edited or damaged files, and a disk that fills up: each command line ends with one line on stderr that
says what happened and what to do (exit status 1, no traceback), and the files it read or replaces are unchanged.

Data folders (meta.json), checkpoints (tokenizer entry, training state, weights), Hugging Face folders (weights
cut short, a corrupt header, weights that do not fit config.json, a pickle with code) and a real full disk (a small
tmpfs), each through `python -m tinylm.<command>` in a process of its own (tests/preloaded.py), as a user runs it.
"""

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch

from tests.helpers import mounted_tmpfs, run_cli
from tinylm.config import GPTConfig
from tinylm.interop.hf_gpt2 import from_hf_gpt2
from tinylm.interop.hf_llama import InteropError, from_hf_llama
from tinylm.model.gpt import GPT
from tinylm.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model,
    load_training_checkpoint,
    model_checkpoint,
    save_checkpoint,
)

transformers = pytest.importorskip("transformers")


def assert_one_line_error(result, message: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert lines[0].startswith("error: ") and re.search(message, lines[0]), lines[0]


# -- data folders ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("meta, message", [
    ("[1, 2]", r"meta\.json holds an array, not the JSON object of fields tinylm writes: it was edited or damaged; "
               r"delete \S+/shakespeare_char and prepare the data again"),
    ('{"source": ', r"meta\.json is not valid JSON \(.*\): it was edited or damaged; delete \S+/shakespeare_char"),
    (None, r"meta\.json: the tokenizer description is str 'char', not a dict with a 'kind'; "
           r"delete \S+/shakespeare_char and prepare it again: python -m tinylm\.prepare shakespeare-char --out "),
], ids=["a-json-array", "cut-short", "tokenizer-a-string"])
def test_a_hand_edited_meta_json_is_a_one_line_error(data_root, tmp_path, meta, message):
    folder = tmp_path / "shakespeare_char"
    shutil.copytree(data_root / "shakespeare_char", folder)
    meta_json = folder / "meta.json"
    if meta is None:  # valid JSON, its tokenizer entry replaced by a string
        meta = json.dumps({**json.loads(meta_json.read_text()), "tokenizer": "char"})
    meta_json.write_text(meta)
    result = run_cli("tinylm.prepare", "shakespeare-char", "--out", folder, data_dir=tmp_path)
    assert_one_line_error(result, message)
    assert meta_json.read_text() == meta


# -- checkpoints ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory, data_root):
    """A smoke training run (best.pt and last.pt), and its checkpoint's entries to build damaged copies from."""
    out = tmp_path_factory.mktemp("damaged") / "run"
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, data_dir=data_root)
    assert result.returncode == 0, result.stderr
    state = {k: v for k, v in load_checkpoint(out / "last.pt").items() if k not in ("format", "version")}
    return out, state


@pytest.mark.parametrize("change, message", [
    ({"tokenizer": "char"}, r"its tokenizer entry is str 'char', not a tokenizer description; the file was edited or "
                            r"damaged: use another checkpoint"),
    ("nan", r"its weights are not finite \(transformer\.h\.0\.attn\.c_attn\.weight holds NaN or infinity\): the run "
            r"that wrote it diverged, or the file is damaged; use another checkpoint"),
], ids=["tokenizer-a-string", "nan-weights"])
def test_sampling_from_a_damaged_checkpoint_is_a_one_line_error(run, tmp_path, data_root, change, message):
    out, state = run
    if change == "nan":  # what sampling reported as "probability tensor contains either inf, nan or element < 0"
        weights = dict(state["model"])
        weights["transformer.h.0.attn.c_attn.weight"] = weights["transformer.h.0.attn.c_attn.weight"].clone()
        weights["transformer.h.0.attn.c_attn.weight"][0, 0] = float("nan")
        change = {"model": weights}
    save_checkpoint(tmp_path / "damaged.pt", {**state, **change})
    result = run_cli("tinylm.sample", "--ckpt", tmp_path / "damaged.pt", "--prompt", "ROMEO:", "--max-new-tokens", 5,
                     data_dir=data_root)
    assert_one_line_error(result, r"damaged\.pt: " + message)


def test_a_tokenizer_description_without_its_fields_is_a_checkpoint_error(run, tmp_path):
    out, state = run
    save_checkpoint(tmp_path / "damaged.pt", {**state, "tokenizer": {"kind": "char"}})
    with pytest.raises(CheckpointError, match=r"damaged\.pt: its tokenizer cannot be rebuilt \(the 'char' tokenizer "
                                              r"description has no 'chars' field\); the file was edited or damaged"):
        load_model(tmp_path / "damaged.pt")


def test_resuming_from_an_empty_optimizer_state_is_a_one_line_error_that_changes_nothing(run, tmp_path, data_root):
    out, state = run
    resumed = tmp_path / "run"
    shutil.copytree(out, resumed)
    save_checkpoint(resumed / "last.pt", {**state, "optimizer": {}})
    before = {path.name: path.read_bytes() for path in resumed.iterdir()}
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", resumed, "--resume",
                     "--max-steps", 40, data_dir=data_root)
    assert_one_line_error(result, r"last\.pt: its training state is damaged \(its optimizer entry lacks the 'state' "
                                  r"and 'param_groups' a torch optimizer saves\), so it cannot be resumed: copy the "
                                  r"run's best\.pt over it to resume from there, or start a new run")
    assert {path.name: path.read_bytes() for path in resumed.iterdir()} == before


@pytest.mark.parametrize("change, message", [
    ({"optimizer": {"state": {}, "param_groups": [{"lr": 0.1}]}}, r"its optimizer entry lacks the 'state' and "
                                                                   r"'param_groups'"),
    ({"sampler": {}}, r"its sampler entry lacks the batch generator's state"),
    ({"rng": []}, r"its rng entry lacks the dropout generators' states"),
    ({"step": "30"}, r"its step entry is str '30'"),
    ({"best_val_loss": None}, r"its best_val_loss entry is NoneType 'None'"),
], ids=["param-group-without-params", "empty-sampler", "no-rng", "step-a-string", "no-best-loss"])
def test_a_training_state_the_trainer_cannot_load_is_refused_when_loaded(run, tmp_path, change, message):
    out, state = run
    save_checkpoint(tmp_path / "last.pt", {**state, **change})
    with pytest.raises(CheckpointError, match=r"last\.pt: its training state is damaged \(" + message):
        load_training_checkpoint(tmp_path / "last.pt")


def test_an_intact_training_state_loads(run):
    out, _ = run
    assert load_training_checkpoint(out / "last.pt")["step"] > 0


# -- Hugging Face folders -------------------------------------------------------------------------------------------

def _truncate(folder: Path) -> None:
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


def _corrupt_header(folder: Path) -> None:
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[8:16] = b"garbage!"  # the JSON header starts after its 8-byte length
    weights.write_bytes(bytes(data))


def _widen_config(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    width = "n_embd" if config["model_type"] == "gpt2" else "intermediate_size"
    (folder / "config.json").write_text(json.dumps({**config, width: 2 * config[width]}))


class _MakesAFolder:
    """A pickle that runs os.mkdir when loaded: what a malicious pytorch_model.bin could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def _pickle_with_code(folder: Path) -> None:
    (folder / "model.safetensors").unlink()
    torch.save({"transformer.wte.weight": _MakesAFolder(folder / "code-ran")}, folder / "pytorch_model.bin")


def _truncate_bin(folder: Path) -> None:
    state = transformers.AutoModelForCausalLM.from_pretrained(folder).state_dict()
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")
    data = (folder / "pytorch_model.bin").read_bytes()
    (folder / "pytorch_model.bin").write_bytes(data[: len(data) // 2])


def _tiny_hf_model(family: str):
    torch.manual_seed(0)
    if family == "gpt2":
        return transformers.GPT2LMHeadModel(transformers.GPT2Config(
            vocab_size=100, n_positions=32, n_embd=16, n_layer=2, n_head=2, bos_token_id=None, eos_token_id=None))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=100, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=32, bos_token_id=None, eos_token_id=None, pad_token_id=None))


@pytest.mark.parametrize("family, damage, message", [
    ("gpt2", _truncate, r"its model\.safetensors is damaged or cut short \(.*\); download or export the model again"),
    ("gpt2", _corrupt_header, r"its model\.safetensors is damaged or cut short \(.*header.*\)"),
    ("gpt2", _widen_config, r"its GPT-2 weights do not fit its config\.json: transformer\.h\.0\.attn\.c_attn\.bias has "
                            r"shape \(48,\), the config gives \(96,\); .* \(and \d+ more\); use the config\.json that "
                            r"came with the weights"),
    ("gpt2", _pickle_with_code, r"its pytorch_model\.bin holds Python objects other than tensors \(loading it could "
                                r"run arbitrary code\) or is damaged, so it was not loaded"),
], ids=["safetensors-cut-short", "safetensors-corrupt-header", "config-does-not-fit", "bin-pickle-with-code"])
def test_importing_a_damaged_hugging_face_folder_is_a_one_line_error(tmp_path, data_root, family, damage, message):
    folder = tmp_path / "hf"
    _tiny_hf_model(family).save_pretrained(folder)
    damage(folder)
    result = run_cli("tinylm.interop", "import", "--hf", folder, "--out", tmp_path / "imported.pt", data_dir=data_root)
    assert_one_line_error(result, re.escape(str(folder)) + ": " + message)
    assert not (tmp_path / "imported.pt").exists() and not (folder / "code-ran").exists()


@pytest.mark.parametrize("family, damage, message", [
    ("llama", _widen_config, r"its Llama weights do not fit its config\.json: model\.layers\.0\.mlp\.down_proj\.weight "
                             r"has shape \(16, 32\), the config gives \(16, 64\)"),
    ("llama", _truncate, r"its model\.safetensors is damaged or cut short"),
    ("gpt2", _truncate_bin, r"its weights file could not be read \(.*\): it is damaged or cut short"),
], ids=["llama-config-does-not-fit", "llama-safetensors-cut-short", "gpt2-bin-cut-short"])
def test_the_llama_and_pytorch_bin_paths_refuse_damaged_folders_too(tmp_path, family, damage, message):
    folder = tmp_path / "hf"
    _tiny_hf_model(family).save_pretrained(folder)
    damage(folder)
    with pytest.raises(InteropError, match=re.escape(str(folder)) + ": " + message):
        (from_hf_llama if family == "llama" else from_hf_gpt2)(folder)


# -- a full disk ----------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 256 KiB file system (tmpfs), unmounted afterwards; skipped where this process may not mount."""
    with mounted_tmpfs(tmp_path / "disk", "256k") as mount_point:
        yield mount_point


def test_a_disk_that_fills_up_while_saving_a_checkpoint_is_the_disk_full_error_and_keeps_the_old_file(
        small_disk, tmp_path, data_root, sentencepiece_model):
    """torch.save reports a failed write as "RuntimeError: [enforce fail at inline_container.cc] unexpected pos";
    the command says the disk is full, names the checkpoint, and the checkpoint it was replacing is intact."""
    torch.manual_seed(0)
    previous = small_disk / "model.pt"  # ~40 KB: fits, with room to spare that the new ~450 KB cannot use
    save_checkpoint(previous, model_checkpoint(GPT(GPTConfig(vocab_size=100, block_size=32, n_layer=1, n_head=2,
                                                             n_embd=16))))
    before = previous.read_bytes()
    folder = tmp_path / "hf"
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=400, n_positions=32, n_embd=64, n_layer=2,
                                                         n_head=2, bos_token_id=None, eos_token_id=None)
                                 ).save_pretrained(folder)
    result = run_cli("tinylm.interop", "import", "--hf", folder, "--tokenizer-model", sentencepiece_model, "--out",
                     previous, data_dir=data_root)
    assert_one_line_error(result, r"No space left on device: " + re.escape(str(previous)) + r"; the disk is full: "
                                  r"free some space, or write elsewhere")
    assert previous.read_bytes() == before and [p.name for p in small_disk.iterdir()] == ["model.pt"]
