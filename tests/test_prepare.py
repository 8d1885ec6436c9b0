"""`python -m tinylm.prepare` from the offline mirror, and the tinystories track's trimmed vocabulary."""

import contextlib
import dataclasses
import errno
import io
import os
import runpy
import shlex
import shutil
import sys

import numpy as np
import pytest

from tests.helpers import REPO
from tests.preloaded import run_module
from tinylm.cli import COMMANDS
from tinylm.cli.prepare import cli, main
from tinylm.data import fineweb as shards
from tinylm.data.corpora import (
    TINYSTORIES_SAMPLE,
    dataset_source,
    default_folder,
    prepare_shakespeare_char,
    prepare_tinystories,
    prepare_trimmed,
)
from tinylm.data.tokens import DataError, read_meta, read_tokens
from tinylm.tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from tinylm.train.recipes import get_track


@pytest.fixture(scope="module")
def tinystories_root(tmp_path_factory):
    """A data folder into which `python -m tinylm.prepare tinystories --source sample` ran once, as a user runs it."""
    root = tmp_path_factory.mktemp("prepared")
    env = {**os.environ, "TINYLM_DATA_DIR": str(root), "OMP_NUM_THREADS": "1"}
    assert env.get("TINYLM_DATA_MIRROR"), "the root conftest.py should point TINYLM_DATA_MIRROR at the offline mirror"
    result = run_module("tinylm.prepare", ["tinystories", "--source", "sample"], cwd=REPO, env=env, timeout=120)
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
        # one after each story
        assert np.count_nonzero(tokens == BPETokenizer("gpt2").eot_token) == meta[f"{split}_stories"]
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
    assert (meta["train_tokens"] == len(read_tokens(folder / "train.bin"))
            and meta["val_tokens"] == len(read_tokens(folder / "val.bin")))
    assert f"{meta['train_tokens']:,} tokens" in first and f"{meta['val_tokens']:,} tokens" in first
    assert "char (65 tokens)" in first
    stamp = (folder / "train.bin").stat().st_mtime_ns
    main(["shakespeare-char"])
    assert "already prepared" in capsys.readouterr().out and (folder / "train.bin").stat().st_mtime_ns == stamp


def test_out_names_the_folder(tmp_path, capsys):
    main(["shakespeare-char", "--out", str(tmp_path / "elsewhere")])
    assert read_meta(tmp_path / "elsewhere")["val_tokens"] > 0
    assert f"prepared in {tmp_path / 'elsewhere'}" in capsys.readouterr().out


def test_source_applies_to_tinystories_and_fineweb_edu_only(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(["shakespeare-char", "--source", "sample"])
    assert exit_info.value.code == 2
    assert "--source applies to tinystories and fineweb-edu only" in capsys.readouterr().err


def test_default_folders_follow_the_data_dir_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    assert default_folder("shakespeare-char") == tmp_path / "shakespeare_char"
    assert default_folder("tinystories", "hf") == tmp_path / "tinystories"
    assert default_folder("tinystories") == tmp_path / "tinystories_sample"  # the mirror is set: the sample
    monkeypatch.delenv("TINYLM_DATA_MIRROR")
    assert dataset_source(None, "TinyStories") == "hf"
    with pytest.raises(ValueError, match="'hf'"):
        dataset_source("web", "TinyStories")


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


def test_the_trimmed_vocabulary_is_prepared_once_by_the_cli_and_read_by_the_track(tinystories_root, monkeypatch):
    root, stdout = tinystories_root
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root))
    trimmed = root / "tinystories_sample_trimmed"
    assert f"tinystories, trimmed vocabulary (the cpu and smoke profiles): prepared in {trimmed}" in stdout
    written = {name: (trimmed / name).stat().st_mtime_ns for name in ("train.bin", "val.bin", "meta.json")}
    data = get_track("tinystories").prepare("smoke")
    assert {name: (trimmed / name).stat().st_mtime_ns for name in written} == written, "read, not computed again"
    assert get_track("tinystories").prepare("cpu").folder == data.folder == trimmed  # both small profiles
    base = prepare_tinystories(source="sample")
    expected = TrimmedBPETokenizer.from_ids(base.train)
    assert data.tokenizer.kept_ids == expected.kept_ids
    assert (np.array_equal(data.train, expected.compact(base.train))
            and np.array_equal(data.val, expected.compact(base.val)))


def test_a_changed_base_dataset_prepares_the_trimmed_one_again(tinystories_root, tmp_path):
    base = prepare_tinystories(tinystories_root[0] / "tinystories_sample", source="sample")
    first = prepare_trimmed(base, tmp_path / "trimmed")
    shorter = dataclasses.replace(base, train=base.train[:5000], meta={**base.meta, "train_tokens": 5000})
    again = prepare_trimmed(shorter, tmp_path / "trimmed")
    assert len(first.train) == len(base.train) and len(again.train) == 5000
    assert again.tokenizer.kept_ids == np.unique(base.train[:5000]).tolist() != first.tokenizer.kept_ids



# -- tracks -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("track", ["shakespeare-char", "tinystories", "gpt2-124m"])
def test_prepare_track_writes_what_train_reads_so_train_has_nothing_left_to_do(track, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    data = main(["--track", track, "--profile", "smoke"])
    out = capsys.readouterr().out
    assert f"prepared in {data.folder}" in out and "already" not in out
    assert f"next: python -m tinylm.train {track} --profile smoke" in out
    files = {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()}
    read = get_track(track).prepare("smoke")  # what `train` calls first
    assert read.folder == data.folder and read.meta == data.meta
    assert {path: path.stat().st_mtime_ns for path in tmp_path.rglob("*") if path.is_file()} == files, "nothing redone"
    main(["--track", track, "--profile", "smoke"])
    assert f"already prepared (nothing to do) in {data.folder}" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--track", "tinystories", "--out", "x"], "--out applies to a dataset, not to --track"),
    (["--track", "gpt2-124m", "--workers", "2"], "--workers applies to a dataset, not to --track"),
    (["tinystories", "--track", "tinystories"], "give a dataset or --track, not both"),
    (["tinystories", "--profile", "cpu"], "--profile applies to --track only"),
    ([], "name a dataset (shakespeare-char, tinystories, fineweb-edu), mirror, tokenizer, or a track with --track"),
])
def test_track_and_dataset_options_do_not_mix(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


# -- fineweb-edu ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fineweb_root(tmp_path_factory):
    """`python -m tinylm.prepare fineweb-edu --workers 2` run once, in this process (worker processes forked)."""
    root = tmp_path_factory.mktemp("fineweb")
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(io.StringIO()) as stdout:
        patch.setenv("TINYLM_DATA_DIR", str(root))
        main(["fineweb-edu", "--workers", "2"])
    return root, stdout.getvalue()


def test_prepare_cli_shards_the_fineweb_edu_sample_in_worker_processes(fineweb_root):
    root, stdout = fineweb_root
    folder = root / "fineweb_edu_sample"  # the mirror is set: the sample, in its own folder
    progress = shards.read_progress(folder)
    assert progress["complete"] and progress["workers"] == 2 and progress["tokens_per_s"] > 0
    assert [s["name"] for s in progress["shards"]] == [shards.shard_name(i) for i in range(4)]
    assert f"fineweb-edu: prepared in {folder}\n" in stdout
    for line in ("val:   1 shard, 20,000 tokens", "train: 3 shards, 53,056 tokens",
                 "total:  73,056 tokens from 120 documents, 20,000 tokens per shard",
                 f"tokenizer stage: {progress['tokens_per_s']:,} tokens/s ({progress['seconds']} s, 2 workers)"):
        assert line in stdout


def test_fineweb_edu_prepared_again_or_resumed_says_so(fineweb_root, tmp_path, monkeypatch, capsys):
    root, _ = fineweb_root
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root))
    folder = root / "fineweb_edu_sample"
    before = {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}
    assert main(["fineweb-edu"]) == folder
    assert {path.name: path.stat().st_mtime_ns for path in folder.iterdir()} == before
    out = capsys.readouterr().out
    assert f"already prepared (nothing to do) in {folder}" in out and "2 workers when it was prepared" in out

    write, written = shards._write_shard, []

    def disk_full_on_third(path, tokens):
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        write(path, tokens)

    monkeypatch.setattr(shards, "_write_shard", disk_full_on_third)
    args = ["fineweb-edu", "--out", str(tmp_path / "f"), "--shard-tokens", "7000", "--workers", "1"]
    with pytest.raises(SystemExit) as exit_info:
        cli(args)
    assert exit_info.value.code.startswith(f"error: {os.strerror(errno.ENOSPC)}: {tmp_path / 'f'}")
    assert "free some space" in exit_info.value.code
    monkeypatch.setattr(shards, "_write_shard", write)
    capsys.readouterr()
    main(args)
    out = capsys.readouterr().out
    assert f"prepared in {tmp_path / 'f'} (resumed after 2 finished shards)" in out
    assert "train: 10 shards, 66,056 tokens" in out and "tokens/s" in out


@pytest.mark.parametrize("argv, message", [
    (["tinystories", "--shard-tokens", "10"], "--shard-tokens applies to fineweb-edu only"),
    (["shakespeare-char", "--config", "sample-10BT"], "--config applies to fineweb-edu only"),
    (["tinystories", "--workers", "2"], "--workers applies to fineweb-edu only"),
    (["fineweb-edu", "--shard-tokens", "0"], "argument --shard-tokens: must be an integer >= 1, got 0"),
    (["fineweb-edu", "--workers", "0"], "argument --workers: must be an integer >= 1, got 0"),
])
def test_fineweb_edu_options_are_checked(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli(argv)
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_fineweb_edu_sample_has_one_config_and_default_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    with pytest.raises(SystemExit) as exit_info:
        cli(["fineweb-edu", "--config", "sample-100BT"])  # offline: the sample, which is sample-10BT only
    assert "use source 'hf' for config 'sample-100BT'" in exit_info.value.code
    assert shards.default_fineweb_edu_folder() == tmp_path / "fineweb_edu_sample"
    assert shards.default_fineweb_edu_folder("hf") == tmp_path / "fineweb_edu"
    assert shards.default_fineweb_edu_folder("hf", "sample-100BT") == tmp_path / "fineweb_edu_sample-100BT"
    monkeypatch.delenv("TINYLM_DATA_MIRROR")
    assert dataset_source(None, "FineWeb-Edu") == "hf"


@pytest.mark.filterwarnings("ignore:.* found in sys.modules:RuntimeWarning")
@pytest.mark.parametrize("module", ["tinylm", *(f"tinylm.{name}" for name in COMMANDS)])
def test_spawned_workers_importing_the_cli_as_their_main_module_do_nothing(monkeypatch, module):
    """Under "spawn" (macOS, Windows; "forkserver" too) every worker re-imports `python -m tinylm.prepare`'s module
    as __mp_main__; without the __name__ guard each would parse the command line (and exit here) and start again."""
    monkeypatch.setattr(sys, "argv", [module, "not-a-dataset"])
    namespace = runpy.run_module(module, run_name="__mp_main__")  # a command that ran would exit: SystemExit
    assert namespace["__name__"] == "__mp_main__"


def test_a_prepared_file_cut_short_is_refused_with_the_command_that_prepares_it_again(data_root, tmp_path):
    folder = tmp_path / "shakespeare_char"
    shutil.copytree(data_root / "shakespeare_char", folder)
    val = folder / "val.bin"
    val.write_bytes(val.read_bytes()[:-20])  # an interrupted copy: 10 tokens short
    recorded = read_meta(folder)["val_tokens"]
    with pytest.raises(DataError,
                       match=rf"val.bin holds {recorded - 10:,} tokens but .*meta.json records {recorded:,}") as error:
        prepare_shakespeare_char(folder)
    command = f"python -m tinylm.prepare shakespeare-char --out {folder}"
    assert str(error.value).endswith(f"delete {folder} and prepare it again: {command}")
    shutil.rmtree(folder)  # the advice, followed
    result = run_module("tinylm.prepare", ["shakespeare-char", "--out", folder], cwd=REPO,
                        env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert len(prepare_shakespeare_char(folder).val) == recorded


def test_a_trimmed_file_cut_short_names_the_command_that_writes_it_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    trimmed = main(["--track", "tinystories", "--profile", "smoke"]).folder
    (trimmed / "train.bin").write_bytes((trimmed / "train.bin").read_bytes()[:-2])
    with pytest.raises(DataError) as error:
        get_track("tinystories").prepare("cpu")
    command = "python -m tinylm.prepare --track tinystories --profile cpu"
    assert str(error.value).endswith(f"delete {trimmed} and prepare it again: {command}")
    shutil.rmtree(trimmed)  # the advice, followed
    main(shlex.split(command)[3:])
    assert len(get_track("tinystories").prepare("smoke").train) == read_meta(trimmed)["train_tokens"]


def test_max_train_stories_keeps_the_first_stories_in_a_folder_of_its_own(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    full = prepare_tinystories(source="sample")
    first = prepare_tinystories(source="sample", max_train_stories=100)
    assert first.folder == tmp_path / "tinystories_sample_first100" != full.folder
    assert first.meta["train_stories"] == first.meta["max_train_stories"] == 100
    ends = np.flatnonzero(np.asarray(full.train) == BPETokenizer("gpt2").eot_token)  # one after each story
    np.testing.assert_array_equal(first.train, full.train[: ends[99] + 1])
    np.testing.assert_array_equal(first.val, full.val)  # validation stays whole
    assert prepare_tinystories(source="sample").meta == full.meta  # the full folder is untouched and still valid
    # a folder prepared with another cap is prepared again, never read as the wrong subset
    assert prepare_tinystories(first.folder, source="sample", max_train_stories=50).meta["train_stories"] == 50
    everything = prepare_tinystories(first.folder, source="sample")  # and asked for every story, all of them
    np.testing.assert_array_equal(everything.train, full.train)
    with pytest.raises(ValueError, match="positive"):
        prepare_tinystories(source="sample", max_train_stories=0)


def test_max_train_stories_streams_only_those_stories_from_hugging_face(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    class Stream:
        def __init__(self, split):
            self.split = split

        def take(self, n):
            calls.append(("take", self.split, n))
            return [{"text": f"Story {i} of {self.split}."} for i in range(n)]

        def __iter__(self):
            return iter([{"text": f"Held-out story {i}."} for i in range(3)])

    def load_dataset(name, split=None, streaming=False):
        calls.append((name, split, streaming))
        assert streaming, "a bounded preparation must not download the whole dataset"
        return Stream(split)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    data = prepare_tinystories(tmp_path / "first5", source="hf", max_train_stories=5)
    assert ("take", "train", 5) in calls and ("roneneldan/TinyStories", "validation", True) in calls
    assert (data.meta["train_stories"], data.meta["val_stories"]) == (5, 3)
    assert BPETokenizer("gpt2").decode(data.train).startswith("Story 0 of train.<|endoftext|>Story 1")
