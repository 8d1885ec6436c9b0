"""Token files, the random window sampler, and the whole-split validation loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tinylm.data.tokens import (
    DataError,
    RandomWindowSampler,
    gather_windows,
    read_meta,
    read_tokens,
    write_meta,
    write_tokens,
)
from tinylm.eval.loss import evaluate_loss, evaluation_windows


# -- token files ---------------------------------------------------------------------------------
def test_write_read_tokens_round_trip_as_uint16(tmp_path):
    ids = np.array([0, 1, 255, 256, 50256, 65535, 7], dtype=np.int64)
    path = tmp_path / "train.bin"
    write_tokens(path, ids)
    assert path.stat().st_size == 2 * len(ids)
    back = read_tokens(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, ids)
    assert [p.name for p in tmp_path.iterdir()] == ["train.bin"]


def test_write_tokens_accepts_plain_lists(tmp_path):
    write_tokens(tmp_path / "a.bin", [3, 1, 2])
    np.testing.assert_array_equal(read_tokens(tmp_path / "a.bin"), [3, 1, 2])


@pytest.mark.parametrize("bad", [[1, 65536], [70000], [-1, 2]])
def test_ids_that_do_not_fit_uint16_are_an_error_and_write_nothing(tmp_path, bad):
    with pytest.raises(ValueError, match="65535"):
        write_tokens(tmp_path / "bad.bin", bad)
    assert list(tmp_path.iterdir()) == []


def test_reading_a_missing_token_file_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare"):
        read_tokens(tmp_path / "nope.bin")


def test_a_token_file_of_another_size_than_recorded_is_a_data_error_that_says_what_to_do(tmp_path):
    path = tmp_path / "train.bin"
    write_tokens(path, np.arange(100))
    assert len(read_tokens(path, expected=100)) == 100
    with pytest.raises(DataError, match=r"train.bin holds 100 tokens but meta.json records 120 .*; run this"):
        read_tokens(path, expected=120, record="meta.json", remedy="run this")
    with path.open("ab") as f:
        f.write(b"\0")  # half a token: not a uint16 file at all
    with pytest.raises(DataError, match="201 bytes, not a whole number of 2-byte tokens"):
        read_tokens(path)


def test_ids_outside_the_vocabulary_are_a_data_error_naming_the_file_not_an_index_error(tmp_path, bigram):
    ids = np.arange(100) % 37
    ids[57] = 40
    path = tmp_path / "train.bin"
    write_tokens(path, ids)
    tokens = read_tokens(path)
    np.testing.assert_array_equal(gather_windows(tokens, [0, 60], 9, vocab_size=37), [ids[0:9], ids[60:69]])
    with pytest.raises(DataError, match=rf"{path} holds token id 40 at position 57, outside the vocabulary of 37 ids"):
        gather_windows(tokens, [0, 50], 9, vocab_size=37)
    foreign = np.full(100, 40, dtype=np.uint16)  # every window holds an id the 37-row embedding does not have
    with pytest.raises(DataError, match="token array holds token id 40"):
        RandomWindowSampler(foreign, 8, 4, seed=0, vocab_size=37).next_batch()
    with pytest.raises(DataError, match="token id 40 at position 0"):
        evaluate_loss(bigram(), foreign, 8, 4, "cpu")


def test_meta_round_trip(tmp_path):
    meta = {"tokenizer": {"kind": "char", "chars": ["\n", "a", "é"]}, "train_tokens": 9}
    assert read_meta(tmp_path) is None
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta


# -- RandomWindowSampler -------------------------------------------------------------------------
def draw(sampler, n):
    return [sampler.next_batch() for _ in range(n)]


def test_same_seed_gives_the_same_batches_and_another_seed_does_not():
    tokens = np.arange(500, dtype=np.uint16)
    a, b = draw(RandomWindowSampler(tokens, 8, 4, seed=3), 5), draw(RandomWindowSampler(tokens, 8, 4, seed=3), 5)
    c = draw(RandomWindowSampler(tokens, 8, 4, seed=4), 5)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))


def test_sampler_ignores_the_global_random_state():
    tokens = np.arange(500, dtype=np.uint16)
    torch.manual_seed(0)
    a = draw(RandomWindowSampler(tokens, 8, 4, seed=3), 3)
    torch.manual_seed(1)
    torch.rand(10)
    b = draw(RandomWindowSampler(tokens, 8, 4, seed=3), 3)
    assert all(torch.equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))


def test_windows_are_token_slices_and_y_is_x_shifted_by_one():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50000, 300).astype(np.uint16)
    block = 10
    sampler = RandomWindowSampler(tokens, block, batch_size=6, seed=0)
    # Recover each window's start by searching the token array (random ids make matches unique).
    windows = np.lib.stride_tricks.sliding_window_view(tokens.astype(np.int64), block + 1)
    for x, y in draw(sampler, 10):
        assert x.shape == y.shape == (6, block) and x.dtype == y.dtype == torch.int64
        for row_x, row_y in zip(x.numpy(), y.numpy()):
            matches = np.flatnonzero((windows[:, :block] == row_x).all(axis=1))
            assert len(matches) == 1
            s = matches[0]
            np.testing.assert_array_equal(row_y, tokens[s + 1 : s + block + 1])


def test_every_valid_start_offset_is_drawn_and_none_outside():
    n, block = 40, 8
    tokens = np.arange(n, dtype=np.uint16)  # token value == its offset
    sampler = RandomWindowSampler(tokens, block, batch_size=16, seed=0)
    starts = torch.cat([x[:, 0] for x, _ in draw(sampler, 100)])  # 1,600 draws over 32 offsets
    assert starts.min() >= 0 and starts.max() <= n - block - 1
    assert set(starts.tolist()) == set(range(n - block))  # the last window's target is the last token


def test_tokens_shorter_than_one_window_are_an_error():
    with pytest.raises(ValueError, match="block_size"):
        RandomWindowSampler(np.arange(8, dtype=np.uint16), block_size=8, batch_size=1, seed=0)


def test_a_single_window_array_always_yields_that_window():
    tokens = np.arange(9, dtype=np.uint16)
    x, y = RandomWindowSampler(tokens, 8, 3, seed=0).next_batch()
    assert torch.equal(x, torch.arange(8).expand(3, 8)) and torch.equal(y, torch.arange(1, 9).expand(3, 8))


def test_state_dict_continues_the_identical_sequence():
    tokens = np.arange(1000, dtype=np.uint16)
    original = RandomWindowSampler(tokens, 16, 4, seed=0)
    draw(original, 3)
    state = original.state_dict()
    expected = draw(original, 4)
    restored = RandomWindowSampler(tokens, 16, 4, seed=99)
    restored.load_state_dict(state)
    for (xe, ye), (xr, yr) in zip(expected, draw(restored, 4)):
        assert torch.equal(xe, xr) and torch.equal(ye, yr)


# -- whole-split evaluation ----------------------------------------------------------------------
def coverage(num_tokens, block_size):
    """How many times each token index is scored as a target by evaluation_windows."""
    counts = np.zeros(num_tokens, dtype=int)
    window = min(block_size, num_tokens - 1)
    for start, first_scored in evaluation_windows(num_tokens, block_size):
        assert 0 <= start and start + window <= num_tokens - 1  # the window's tokens exist
        assert 0 <= first_scored < window
        counts[start + 1 + first_scored : start + 1 + window] += 1
    return counts


@pytest.mark.parametrize("block_size", [1, 2, 3, 5, 8, 16, 64])
def test_evaluation_windows_score_every_target_exactly_once(block_size):
    for num_tokens in range(2, 80):
        counts = coverage(num_tokens, block_size)
        assert counts[0] == 0, (num_tokens, block_size)  # the first token is never a target
        assert np.all(counts[1:] == 1), (num_tokens, block_size, counts)
        window = min(block_size, num_tokens - 1)
        assert len(evaluation_windows(num_tokens, block_size)) == -(-(num_tokens - 1) // window)  # no wasted windows


def test_evaluation_needs_two_tokens():
    with pytest.raises(ValueError):
        evaluation_windows(1, 8)


@pytest.mark.parametrize("num_tokens, block_size, batch_size",
                         [(203, 16, 3), (64, 16, 64), (17, 16, 2), (10, 16, 4), (2, 16, 1)])
def test_evaluate_loss_equals_bigram_cross_entropy_over_the_whole_split(bigram, num_tokens, block_size, batch_size):
    model = bigram()
    rng = np.random.default_rng(num_tokens)
    tokens = rng.integers(0, model.table.num_embeddings, num_tokens).astype(np.uint16)
    ids = torch.from_numpy(tokens.astype(np.int64))
    expected = F.cross_entropy(model.table.weight[ids[:-1]], ids[1:]).item()
    got = evaluate_loss(model, tokens, block_size, batch_size, "cpu")
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_loss_restores_the_training_flag(bigram, training):
    model = bigram().train(training)
    evaluate_loss(model, np.arange(30, dtype=np.uint16) % 37, 8, 4, "cpu")
    assert model.training is training
