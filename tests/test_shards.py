"""FineWeb-Edu shards from the offline mirror's 120 documents, and the sharded, resumable, DDP-aware loader."""

import json
import multiprocessing
import os
import shutil
import sys
import types

import numpy as np
import pytest
import tiktoken
import torch

from tinylm.data import fineweb as shards
from tinylm.data.fineweb import (
    FINEWEB_EDU_SAMPLE,
    SAMPLE_SHARD_TOKENS,
    ShardedWindowLoader,
    encode_documents,
    prepare_fineweb_edu,
    read_progress,
    shard_files,
    val_tokens,
)
from tinylm.data.tokens import DataError, read_tokens, write_tokens

EOT = 50256


@pytest.fixture(scope="module")
def documents():
    path = shards.mirror_dir() / FINEWEB_EDU_SAMPLE.mirror_path
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def reference(documents):
    """The token stream computed independently with tiktoken: eot, then the document, for every document."""
    encoding = tiktoken.get_encoding("gpt2")
    assert encoding.eot_token == EOT
    return np.array([t for text in documents for t in (EOT, *encoding.encode_ordinary(text))], dtype=np.uint16)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """The sample prepared once with its default shard size (the source defaults to the sample: the mirror is set)."""
    return prepare_fineweb_edu(tmp_path_factory.mktemp("fineweb") / "sample", workers=1)


def shard_bytes(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.glob("fineweb_edu_*.bin"))}


def stamps(folder):
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.glob("fineweb_edu_*.bin")}


# -- preparation ------------------------------------------------------------------------------------
def test_prepared_sample_is_val_then_train_shards_of_the_whole_token_stream(prepared, documents, reference):
    progress = read_progress(prepared)
    names = [shard["name"] for shard in progress["shards"]]
    assert names == ["fineweb_edu_val_000000.bin", "fineweb_edu_train_000001.bin", "fineweb_edu_train_000002.bin",
                     "fineweb_edu_train_000003.bin"]  # the sample's default shard size gives >= 3 shards
    assert sorted(p.name for p in prepared.glob("*.bin")) == sorted(names)
    assert progress["complete"] and progress["documents"] == len(documents) == 120
    assert progress["shard_tokens"] == SAMPLE_SHARD_TOKENS and progress["source"] == "sample"
    tokens = [read_tokens(prepared / name) for name in names]
    assert [len(t) for t in tokens[:-1]] == [SAMPLE_SHARD_TOKENS] * 3 and 0 < len(tokens[-1]) <= SAMPLE_SHARD_TOKENS
    assert progress["tokens"] == sum(map(len, tokens)) == len(reference) == 73_056  # encoded docs + one eot each
    assert np.array_equal(np.concatenate(tokens), reference)
    assert np.count_nonzero(reference == EOT) == len(documents)

    val = val_tokens(prepared)
    assert isinstance(val, np.memmap) and val[0] == EOT
    first = tiktoken.get_encoding("gpt2").encode_ordinary(documents[0])
    assert tiktoken.get_encoding("gpt2").decode(val[1 : 1 + len(first)].tolist()) == documents[0]
    assert val[1 + len(first)] == EOT  # the second document starts right after


def test_preparing_again_returns_at_once(prepared):
    before = stamps(prepared), (prepared / "progress.json").stat().st_mtime_ns
    assert prepare_fineweb_edu(prepared, workers=2) == prepared
    assert (stamps(prepared), (prepared / "progress.json").stat().st_mtime_ns) == before


def crash_after(monkeypatch, finished: int):
    """Make the shard writer fail once `finished` shards of this run are written, like a killed process."""
    write, calls = shards._write_shard, []

    def failing(path, tokens):
        if len(calls) == finished:
            raise RuntimeError("simulated crash")
        calls.append(path.name)
        write(path, tokens)

    monkeypatch.setattr(shards, "_write_shard", failing)


def test_interrupted_preparation_resumes_without_redoing_finished_shards(tmp_path, monkeypatch):
    whole = prepare_fineweb_edu(tmp_path / "whole", shard_tokens=3000, workers=1)
    folder = tmp_path / "interrupted"
    crash_after(monkeypatch, 2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_fineweb_edu(folder, shard_tokens=3000, workers=2)  # the pool shuts down cleanly on the error
    progress = read_progress(folder)
    assert not progress["complete"] and sorted(s["name"] for s in progress["shards"]) == list(shard_bytes(folder))
    assert len(progress["shards"]) == 2 and 0 < progress["documents"] < 120
    with pytest.raises(DataError, match="not finished"):
        ShardedWindowLoader(folder, block_size=8, batch_size=2)
    finished = stamps(folder)

    monkeypatch.undo()
    prepare_fineweb_edu(folder, shard_tokens=3000, workers=1)
    assert {name: stamp for name, stamp in stamps(folder).items() if name in finished} == finished  # untouched
    assert shard_bytes(folder) == shard_bytes(whole) and len(shard_bytes(whole)) == 25
    done, reference = read_progress(folder), read_progress(whole)
    assert done["complete"] and done["shards"] == reference["shards"] and done["documents"] == reference["documents"]


def test_resuming_inside_documents_longer_than_a_shard(tmp_path, monkeypatch, reference):
    """A crash after every shard, with 1,000-token shards: some documents (up to 2,270 tokens) span three shards,
    so a resumed run starts inside a document and finishes its next shard inside that same document."""
    folder = tmp_path / "bumpy"
    for runs in range(1, 80):
        crash_after(monkeypatch, 1)
        try:
            prepare_fineweb_edu(folder, shard_tokens=1000, workers=1)
        except RuntimeError:
            pass
        monkeypatch.undo()
        if read_progress(folder)["complete"]:
            break
    assert runs == 74  # 74 shards, one per run
    files = shard_files(folder, "val") + shard_files(folder, "train")
    assert np.array_equal(np.concatenate([read_tokens(f) for f in files]), reference)


def test_worker_pool_works_with_the_spawn_start_method(documents):
    """macOS and Windows start workers with "spawn": they import the worker function, nothing of __main__ runs."""
    texts = documents[:6]
    spawned = list(encode_documents(texts, workers=2, docs_per_batch=2, context=multiprocessing.get_context("spawn")))
    local = list(encode_documents(texts, workers=1, docs_per_batch=4))
    assert np.array_equal(np.concatenate([b.tokens for b in spawned]), np.concatenate([b.tokens for b in local]))
    assert np.concatenate([b.lengths for b in spawned]).tolist() == np.concatenate([b.lengths for b in local]).tolist()
    assert sum(b.text_bytes for b in spawned) == sum(len(t.encode("utf-8")) for t in texts)


def test_hf_source_streams_the_config_and_skips_consumed_documents_on_resume(tmp_path, monkeypatch, documents):
    calls = []

    class FakeStream:  # what datasets.load_dataset(..., streaming=True) returns, on the mirror's documents
        def __init__(self, rows):
            self.rows = rows
            self.info = types.SimpleNamespace(splits={"train": types.SimpleNamespace(num_examples=len(documents))})

        def skip(self, n):
            calls.append(("skip", n))
            return FakeStream(self.rows[n:])

        def __iter__(self):
            return iter(self.rows)

    def load_dataset(path, name, split, streaming):
        calls.append((path, name, split, streaming))
        return FakeStream([{"text": text, "id": i} for i, text in enumerate(documents)])

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    crash_after(monkeypatch, 3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        prepare_fineweb_edu(tmp_path / "hf", config="sample-10BT", shard_tokens=5000, source="hf", workers=1)
    consumed = read_progress(tmp_path / "hf")["documents"]
    monkeypatch.setattr(shards, "_write_shard", shards.write_tokens)
    prepare_fineweb_edu(tmp_path / "hf", config="sample-10BT", shard_tokens=5000, source="hf", workers=1)
    assert calls == [("HuggingFaceFW/fineweb-edu", "sample-10BT", "train", True)] * 2 + [("skip", consumed)]
    sample = prepare_fineweb_edu(tmp_path / "sample", shard_tokens=5000, source="sample", workers=1)
    assert shard_bytes(tmp_path / "hf") == shard_bytes(sample)


def test_max_documents_streams_only_the_first_documents(tmp_path, monkeypatch, documents):
    """A small run online (the smoke and cpu profiles) tokenizes the stream's first documents and stops reading."""
    read = []

    class FakeStream:  # a streaming dataset that records how far it was read
        info = None

        def __iter__(self):
            for text in documents:
                read.append(text)
                yield {"text": text}

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: FakeStream()))
    folder = prepare_fineweb_edu(tmp_path / "hf", shard_tokens=5000, source="hf", workers=1, max_documents=30)
    encoding = tiktoken.get_encoding("gpt2")
    expected = np.array([t for text in documents[:30] for t in (EOT, *encoding.encode_ordinary(text))], dtype=np.uint16)
    stream = np.concatenate([read_tokens(path)
                             for path in sorted(folder.glob("fineweb_edu_*.bin"), key=lambda p: p.name[-10:])])
    assert np.array_equal(stream, expected)
    assert len(read) < len(documents), "the stream is not read to its end"
    assert read_progress(folder)["max_documents"] == 30
    with pytest.raises(ValueError, match="max_documents"):
        prepare_fineweb_edu(tmp_path / "s", source="sample", max_documents=30)


def test_other_settings_start_over_and_bad_arguments_are_refused(tmp_path, monkeypatch):
    folder = prepare_fineweb_edu(tmp_path / "f", shard_tokens=30_000, workers=1)
    assert len(shard_bytes(folder)) == 3
    prepare_fineweb_edu(folder, shard_tokens=60_000, workers=1)  # the old third shard must not linger
    assert list(shard_bytes(folder)) == ["fineweb_edu_train_000001.bin", "fineweb_edu_val_000000.bin"]
    with pytest.raises(ValueError, match="sample-10BT documents only"):
        prepare_fineweb_edu(tmp_path / "g", config="sample-100BT", source="sample")
    with pytest.raises(ValueError, match="'hf'"):
        prepare_fineweb_edu(tmp_path / "g", source="web")
    monkeypatch.delenv("TINYLM_DATA_MIRROR")
    with pytest.raises(RuntimeError, match="only in the offline data mirror"):
        prepare_fineweb_edu(tmp_path / "g", source="sample")
    assert not (tmp_path / "g").exists()


# -- the loader ------------------------------------------------------------------------------------
BLOCK = 8
LENGTHS = (161, 97, 130, 5)  # 20 + 12 + 16 + 0 windows of 8 + 1 tokens: the last shard is too short for one


@pytest.fixture
def toy_shards(tmp_path):
    """Shards whose token values tell where they are: shard i, position j holds 1000 * i + j."""
    for i, n in enumerate(LENGTHS):
        write_tokens(tmp_path / f"toy_train_{i:06d}.bin", 1000 * i + np.arange(n))
    write_tokens(tmp_path / "toy_val_000009.bin", np.arange(50))
    return tmp_path


ALL_WINDOWS = sorted((i, k * BLOCK) for i, n in enumerate(LENGTHS) for k in range((n - 1) // BLOCK))


def windows_of(x):
    return [divmod(int(first), 1000) for first in x[:, 0]]


def draw(loader, steps):
    return [loader.next_batch() for _ in range(steps)]


def test_batches_are_memory_mapped_windows_with_targets_shifted_by_one(toy_shards):
    loader = ShardedWindowLoader(toy_shards, block_size=BLOCK, batch_size=3)
    assert [f.name for f in loader.files] == [f"toy_train_{i:06d}.bin" for i in range(4)]  # train split only
    assert all(isinstance(s, np.memmap) for s in loader.shards) and loader.windows_per_epoch == len(ALL_WINDOWS) == 48
    x, y = loader.next_batch("cpu")
    assert x.shape == y.shape == (3, BLOCK) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1) and torch.equal(x - x[:, :1], torch.arange(BLOCK).expand(3, -1))
    assert all(start % BLOCK == 0 for _, start in windows_of(x))
    assert len(val_tokens(toy_shards)) == 50


def test_every_window_appears_once_per_epoch_in_a_shuffled_order(toy_shards):
    loader = ShardedWindowLoader(toy_shards, block_size=BLOCK, batch_size=5)  # 5 does not divide 48
    seen = [w for x, _ in draw(loader, 20) for w in windows_of(x)]  # 100 windows: 2 epochs and 4
    first, second = seen[:48], seen[48:96]
    assert sorted(first) == sorted(second) == ALL_WINDOWS
    assert first != second and first != sorted(first)  # reshuffled every epoch, not read in order
    shard_runs = [shard for i, (shard, _) in enumerate(first) if i == 0 or first[i - 1][0] != shard]
    assert sorted(shard_runs) == [0, 1, 2]  # shard by shard, in a shuffled order of shards
    assert loader.epoch == 2 and loader.window(96) == seen[96]


def test_same_seed_same_sequence_other_seed_another(toy_shards):
    a, b = (ShardedWindowLoader(toy_shards, BLOCK, 4, seed=7) for _ in range(2))
    c = ShardedWindowLoader(toy_shards, BLOCK, 4, seed=8)
    batches_a, batches_b, batches_c = draw(a, 15), draw(b, 15), draw(c, 15)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(batches_a, batches_b))
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(batches_a, batches_c))


def test_two_ranks_split_the_global_batch_of_one_rank(toy_shards):
    ranks = [ShardedWindowLoader(toy_shards, BLOCK, 2, rank=r, world_size=2) for r in range(2)]
    single = ShardedWindowLoader(toy_shards, BLOCK, 4)
    for _ in range(30):  # past two epoch boundaries
        (x0, y0), (x1, y1), (x, y) = ranks[0].next_batch(), ranks[1].next_batch(), single.next_batch()
        assert not set(windows_of(x0)) & set(windows_of(x1))
        assert torch.equal(torch.cat([x0, x1]), x) and torch.equal(torch.cat([y0, y1]), y)
        assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()
    with pytest.raises(ValueError, match="rank"):
        ShardedWindowLoader(toy_shards, BLOCK, 2, rank=2, world_size=2)


def test_state_resumes_the_global_sequence_at_any_world_size(toy_shards):
    reference = ShardedWindowLoader(toy_shards, BLOCK, 4, seed=3)
    expected = [w for x, _ in draw(reference, 30) for w in windows_of(x)]  # 120 windows: 2.5 epochs

    ranks = [ShardedWindowLoader(toy_shards, BLOCK, 2, rank=r, world_size=2, seed=3) for r in range(2)]
    for _ in range(7):
        for loader in ranks:
            loader.next_batch()
    state = ranks[0].state_dict()
    assert state["cursor"] == 28 and json.loads(json.dumps(state)) == state  # plain JSON: fits in any checkpoint

    restored = ShardedWindowLoader(toy_shards, BLOCK, 4, seed=999)  # 1 rank x B=4; the seed comes from the state
    restored.load_state_dict(state)
    assert [w for x, _ in draw(restored, 18) for w in windows_of(x)] == expected[28:100]

    back = [ShardedWindowLoader(toy_shards, BLOCK, 1, rank=r, world_size=4, seed=3) for r in range(4)]  # 4 x B=1
    for loader in back:
        loader.load_state_dict(restored.state_dict())
    resumed = [w for _ in range(5) for loader in back for w in windows_of(loader.next_batch()[0])]
    assert resumed == expected[100:]


def test_state_from_other_data_or_block_size_is_refused(toy_shards, tmp_path_factory):
    state = ShardedWindowLoader(toy_shards, BLOCK, 4).state_dict()
    with pytest.raises(ValueError, match="block_size"):
        ShardedWindowLoader(toy_shards, BLOCK * 2, 4).load_state_dict(state)
    with pytest.raises(ValueError, match="other shards"):
        ShardedWindowLoader(sorted(toy_shards.glob("toy_train_*.bin"))[:3], BLOCK, 4).load_state_dict(state)
    with pytest.raises(ValueError, match="one window"):
        ShardedWindowLoader([toy_shards / "toy_train_000003.bin"], BLOCK, 4)
    with pytest.raises(FileNotFoundError, match="no test shards"):
        ShardedWindowLoader(toy_shards, BLOCK, 4, split="test")


def test_loader_reads_the_prepared_train_shards(prepared, reference):
    loader = ShardedWindowLoader(prepared, block_size=64, batch_size=4, seed=0)
    assert [f.name for f in loader.files] == [f"fineweb_edu_train_{i:06d}.bin" for i in (1, 2, 3)]
    x, y = loader.next_batch()
    for row, (shard, start) in zip(x, (loader.window(i) for i in range(4))):
        begin = SAMPLE_SHARD_TOKENS * (shard + 1) + start  # position in the whole stream; shard 0 is val
        assert row.tolist() == reference[begin : begin + 64].tolist()
    assert os.path.samefile(shard_files(prepared, "val")[0], prepared / "fineweb_edu_val_000000.bin")


def test_a_shard_of_another_size_than_progress_json_records_is_refused(prepared, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(prepared, folder)
    shard = folder / "fineweb_edu_train_000002.bin"
    shard.write_bytes(shard.read_bytes()[:-200])  # an interrupted copy: 100 tokens short
    message = (rf"{shard} holds {SAMPLE_SHARD_TOKENS - 100:,} tokens but {folder / 'progress.json'} "
               rf"records {SAMPLE_SHARD_TOKENS:,}")
    with pytest.raises(DataError, match=message + r".*python -m tinylm.prepare fineweb-edu"):
        ShardedWindowLoader(folder, block_size=64, batch_size=4)
    assert len(val_tokens(folder)) == SAMPLE_SHARD_TOKENS, "the validation shard is intact and still loads"


def test_the_loader_refuses_ids_outside_the_vocabulary_naming_the_shard(toy_shards):
    # shard i holds 1000 * i + j: the first shard's ids fit, the second's do not, from its first token
    with pytest.raises(DataError, match=r"toy_train_000001.bin holds token id 1000 at position 0, outside"):
        ShardedWindowLoader(toy_shards, block_size=BLOCK, batch_size=3, vocab_size=1000)
    assert len(draw(ShardedWindowLoader(toy_shards, block_size=BLOCK, batch_size=3, vocab_size=4000), 20)) == 20
