"""Checkpoints: round trips, atomic writes, and refusing damaged, foreign or malicious files."""

import os
import pickle

import numpy as np
import pytest
import torch

from tinylm.tokenizers.char import CharTokenizer
from tinylm.train.checkpoint import (
    CheckpointError,
    find_checkpoint,
    load_checkpoint,
    load_model,
    model_checkpoint,
    save_checkpoint,
)


def sample_state():
    g = torch.Generator().manual_seed(0)
    return {
        "model": {"w": torch.randn(4, 3, generator=g), "b": torch.arange(5)},
        "step": 12,
        "best_val_loss": float("inf"),
        "tokenizer": {"kind": "char", "chars": ["\n", "a", "é"]},
        "nested": [1, 2.5, "three", None, (4, 5)],
        "rng": g.get_state(),
    }


def assert_same_state(loaded, state):
    assert loaded["format"] == "tinylm-checkpoint" and loaded["version"] == 1
    assert set(loaded) == set(state) | {"format", "version"}
    for key in ("step", "best_val_loss", "tokenizer", "nested"):
        assert loaded[key] == state[key]
    for name, tensor in state["model"].items():
        assert torch.equal(loaded["model"][name], tensor)
    assert torch.equal(loaded["rng"], state["rng"])


def test_save_load_round_trip(tmp_path):
    state = sample_state()
    save_checkpoint(tmp_path / "run" / "last.pt", state)
    assert_same_state(load_checkpoint(tmp_path / "run" / "last.pt"), state)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["last.pt"]


def test_a_run_folder_loads_best_before_last(tmp_path):
    save_checkpoint(tmp_path / "last.pt", {"step": 2})
    assert find_checkpoint(tmp_path).name == "last.pt"
    save_checkpoint(tmp_path / "best.pt", {"step": 1})
    assert load_checkpoint(tmp_path)["step"] == 1


@pytest.mark.parametrize("name", ["missing.pt", "empty_folder"])
def test_missing_checkpoint_is_a_checkpoint_error(tmp_path, name):
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / name)


def test_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    state = sample_state()
    save_checkpoint(path, state)
    real_save = torch.save

    def crashing_save(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half of a zip file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, {**state, "step": 13})
    monkeypatch.setattr(torch, "save", real_save)
    assert_same_state(load_checkpoint(path), state)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temporary file left


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch may warn about the 'pickle protocol' of noise
@pytest.mark.parametrize("seed", range(40))
def test_random_bytes_are_a_checkpoint_error(tmp_path, seed):
    rng = np.random.default_rng(seed)
    path = tmp_path / "noise.pt"
    path.write_bytes(rng.integers(0, 256, int(rng.integers(1, 400)), dtype=np.uint8).tobytes())
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("fraction", [0.0, 0.01, 0.5, 0.99])
def test_truncated_checkpoint_is_a_checkpoint_error(tmp_path, fraction):
    good = tmp_path / "good.pt"
    save_checkpoint(good, sample_state())
    data = good.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_foreign_torch_file_is_not_a_tinylm_checkpoint(tmp_path):
    torch.save({"a": 1}, tmp_path / "foreign.pt")
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    for name in ("foreign.pt", "list.pt"):
        with pytest.raises(CheckpointError, match="not a tinylm checkpoint"):
            load_checkpoint(tmp_path / name)


def test_other_checkpoint_version_is_refused(tmp_path):
    torch.save({"format": "tinylm-checkpoint", "version": 99}, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")


def test_old_checkpoints_without_a_version_still_load(tmp_path, make_model):
    model = make_model()
    torch.save({"format": "tinylm-checkpoint", **model_checkpoint(model)}, tmp_path / "old.pt")
    state = load_checkpoint(tmp_path / "old.pt")
    assert state["version"] == 1 and state["model_config"] == model.config.to_dict()


def _leave_a_mark(path):
    with open(path, "w") as f:
        f.write("code from a pickle ran")


class Payload:
    """Unpickling this object calls _leave_a_mark: the code a malicious checkpoint would run."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_leave_a_mark, (self.path,))


def test_pickled_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "evil.pt"
    torch.save({"format": "tinylm-checkpoint", "version": 1, "model": Payload(str(marker))}, path)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_a_text_file_given_as_a_checkpoint_is_one_line_without_torchs_advice_to_load_it_unsafely(tmp_path):
    """torch's refusal says that weights_only=False "will likely succeed": false for a text file, and the step that
    would run a payload. The error keeps what was refused and leaves that advice out."""
    path = tmp_path / "notes.md"
    path.write_text("# not a checkpoint\n")
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "\n" not in message and "weights_only" not in message and message.startswith(str(path))
    assert "arbitrary code" in message and "best.pt or last.pt" in message


def test_the_payload_would_run_if_unpickled_unsafely(tmp_path):
    """Control for the test above: plain pickle does run the payload, so its absence there is meaningful."""
    marker = tmp_path / "ran.txt"
    pickle.loads(pickle.dumps(Payload(str(marker))))
    assert marker.exists()


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch notes the non-default pickle protocol
def test_plain_pickle_file_with_code_is_refused(tmp_path):
    marker = tmp_path / "ran.txt"
    path = tmp_path / "legacy.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "tinylm-checkpoint", "version": 1, "x": Payload(str(marker))}, f)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()


def test_reference_to_os_system_is_refused(tmp_path):
    path = tmp_path / "system.pt"
    torch.save({"format": "tinylm-checkpoint", "version": 1, "hook": os.system}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_load_model_rebuilds_the_same_model_and_tokenizer(tmp_path, make_model):
    model = make_model(tie_weights=False, attention="explicit")
    tokenizer = CharTokenizer(list("abcdefghijklmnopqrstuvwxyz .,;:!?'\n") + ["é"])
    save_checkpoint(tmp_path / "best.pt", model_checkpoint(model, tokenizer))
    loaded, loaded_tokenizer, state = load_model(tmp_path)
    assert loaded.config == model.config and not loaded.training
    x = torch.randint(0, model.config.vocab_size, (2, 9))
    torch.testing.assert_close(loaded(x)[0], model.eval()(x)[0], rtol=0, atol=0)
    assert loaded_tokenizer.chars == tokenizer.chars
    assert state["format"] == "tinylm-checkpoint"
