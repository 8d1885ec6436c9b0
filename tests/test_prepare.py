"""`python -m tinylm.prepare` from the offline mirror, and the tinystories track's trimmed vocabulary."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinylm.corpora import TINYSTORIES_SAMPLE, default_folder, tinystories_source
from tinylm.data import read_meta, read_tokens
from tinylm.prepare import cli, main
from tinylm.tokenizers import BPETokenizer, TrimmedBPETokenizer
from tinylm.tracks import get_track

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tinystories_root(tmp_path_factory):
    """A data folder into which `python -m tinylm.prepare tinystories --source sample` ran once, as a user runs it."""
    root = tmp_path_factory.mktemp("prepared")
    env = {**os.environ, "TINYLM_DATA_DIR": str(root), "OMP_NUM_THREADS": "1"}
    assert env.get("TINYLM_DATA_MIRROR"), "the root conftest.py should point TINYLM_DATA_MIRROR at the offline mirror"
    result = subprocess.run([sys.executable, "-m", "tinylm.prepare", "tinystories", "--source", "sample"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return root, result.stdout


def test_prepare_cli_tokenizes_the_tinystories_sample(tinystories_root):
    root, stdout = tinystories_root
    folder = root / "tinystories_sample"
    meta = read_meta(folder)
    assert meta["source"] == TINYSTORIES_SAMPLE.mirror_path and meta["tokenizer"] == {"kind": "bpe", "encoding": "gpt2"}
    for split in ("train", "val"):
        tokens = read_tokens(folder / f"{split}.bin")
        assert meta[f"{split}_tokens"] == len(tokens) > 0 and meta[f"{split}_stories"] > 0
        assert np.count_nonzero(tokens == BPETokenizer("gpt2").eot_token) == meta[f"{split}_stories"]  # one after each story
        assert f"{meta[f'{split}_tokens']:,} tokens from {meta[f'{split}_stories']:,} stories" in stdout
    assert f"prepared in {folder}" in stdout and "already" not in stdout
    assert meta["tokens_per_s"] > 0 and f"{meta['tokens_per_s']:,} tokens/s" in stdout


def test_preparing_again_skips_the_work(tinystories_root, monkeypatch, capsys):
    root, _ = tinystories_root
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root))
    folder = root / "tinystories_sample"
    before = {name: (folder / name).stat().st_mtime_ns for name in ("train.bin", "val.bin", "meta.json")}
    data = main(["tinystories"])  # the source defaults to the sample when the mirror is set
    assert {name: (folder / name).stat().st_mtime_ns for name in before} == before
    assert f"already prepared (nothing to do) in {folder}" in capsys.readouterr().out
    assert data.meta == read_meta(folder)


def test_prepare_cli_tokenizes_shakespeare_char_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    main(["shakespeare-char"])
    first = capsys.readouterr().out
    folder = tmp_path / "shakespeare_char"
    meta = read_meta(folder)
    assert f"prepared in {folder}" in first and "already" not in first
    assert meta["train_tokens"] == len(read_tokens(folder / "train.bin")) and meta["val_tokens"] == len(read_tokens(folder / "val.bin"))
    assert f"{meta['train_tokens']:,} tokens" in first and f"{meta['val_tokens']:,} tokens" in first
    assert "char (65 tokens)" in first
    stamp = (folder / "train.bin").stat().st_mtime_ns
    main(["shakespeare-char"])
    assert "already prepared" in capsys.readouterr().out and (folder / "train.bin").stat().st_mtime_ns == stamp


def test_out_names_the_folder(tmp_path, capsys):
    main(["shakespeare-char", "--out", str(tmp_path / "elsewhere")])
    assert read_meta(tmp_path / "elsewhere")["val_tokens"] > 0
    assert f"prepared in {tmp_path / 'elsewhere'}" in capsys.readouterr().out


def test_source_applies_to_tinystories_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["shakespeare-char", "--source", "sample"])
    assert exit_info.value.code == 2 and "--source applies to tinystories only" in capsys.readouterr().err


def test_default_folders_follow_the_data_dir_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    assert default_folder("shakespeare-char") == tmp_path / "shakespeare_char"
    assert default_folder("tinystories", "hf") == tmp_path / "tinystories"
    assert default_folder("tinystories") == tmp_path / "tinystories_sample"  # the mirror is set: the sample
    monkeypatch.delenv("TINYLM_DATA_MIRROR")
    assert tinystories_source() == "hf"
    with pytest.raises(ValueError, match="'hf'"):
        tinystories_source("web")


def test_tinystories_track_trains_on_compact_ids_of_a_trimmed_vocabulary(tinystories_root, monkeypatch):
    root, _ = tinystories_root
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root))  # reuses the files the CLI prepared
    data = get_track("tinystories").prepare("cpu")
    tok = data.tokenizer
    assert isinstance(tok, TrimmedBPETokenizer) and tok.vocab_size == len(tok.kept_ids) + 1 < 10_000
    raw_train = read_tokens(root / "tinystories_sample" / "train.bin")
    assert tok.kept_ids == np.unique(raw_train).tolist()
    assert data.train.max() < tok.unk_id and data.val.max() <= tok.unk_id < tok.vocab_size  # compact ids
    assert len(data.train) == len(raw_train)
    assert tok.decode(data.train[:300]) == tok.base.decode(raw_train[:300])
    assert 0 < np.mean(data.val == tok.unk_id) < 0.02  # a few validation tokens never occur in training

