"""Training data is checked whole when it is loaded: one id outside the vocabulary anywhere in a token file (or
shard) stops the run before its first step, even where no sampled window would ever have touched it."""

import numpy as np
import pytest

from tinylm.data import tokens as token_files
from tinylm.data.fineweb import ShardedWindowLoader
from tinylm.data.tokens import DataError, RandomWindowSampler, check_token_ids, read_tokens, write_tokens
from tinylm.train.trainer import Trainer


def damaged_file(path, length: int, position: int, token_id: int, vocab_size: int = 37):
    ids = np.arange(length) % vocab_size
    ids[position] = token_id
    write_tokens(path, ids)
    return read_tokens(path)


def test_one_foreign_id_in_train_bin_stops_the_sampler_and_the_trainer_before_any_step(tmp_path, make_model,
                                                                                       train_config, tokens):
    # The very last token: only the final target of the last window could reach it, once in ~5,000 draws.
    train = damaged_file(tmp_path / "train.bin", 5000, 4999, 37)
    message = rf"{tmp_path / 'train.bin'} holds token id 37 at position 4,999, outside the vocabulary of 37 ids"
    with pytest.raises(DataError, match=message):
        RandomWindowSampler(train, block_size=16, batch_size=4, seed=0, vocab_size=37)
    with pytest.raises(DataError, match=message):
        Trainer(make_model(), train_config(), train, tokens[1], device="cpu")
    RandomWindowSampler(train, block_size=16, batch_size=4, seed=0)  # no vocabulary given: nothing to check against

    with pytest.raises(DataError, match="the token array holds token id -1 at position 3,"):
        RandomWindowSampler(np.array([1, 2, 3, -1] + [0] * 40), block_size=16, batch_size=4, seed=0, vocab_size=37)


def test_the_first_foreign_id_is_found_across_slices_of_the_scan(tmp_path, monkeypatch):
    monkeypatch.setattr(token_files, "_SCAN_TOKENS", 100)
    ids = np.zeros(1000, dtype=np.uint16)
    ids[[250, 731]] = 60000
    with pytest.raises(DataError, match="token id 60000 at position 250,"):
        check_token_ids(ids, 37)
    check_token_ids(ids[:250], 37)
    check_token_ids(np.zeros(0, dtype=np.uint16), 37)


def test_one_foreign_id_in_a_shard_stops_the_sharded_loader_at_once(tmp_path):
    for i in range(3):
        write_tokens(tmp_path / f"toy_train_{i:06d}.bin", np.arange(161) % 37)
    # Windows of 8 + 1 tokens start at multiples of 8 below 160: token 160 of a shard is never in one.
    damaged_file(tmp_path / "toy_train_000001.bin", 161, 160, 50000)
    with pytest.raises(DataError, match=rf"{tmp_path / 'toy_train_000001.bin'} holds token id 50000 at position 160,"):
        ShardedWindowLoader(tmp_path, block_size=8, batch_size=2, vocab_size=37)
    ShardedWindowLoader(tmp_path, block_size=8, batch_size=2)
