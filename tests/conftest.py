"""Shared tiny fixtures: models and runs small enough that the whole suite takes seconds on 2 CPU cores.

The repository's root conftest.py already points $TINYLM_DATA_MIRROR (and $TIKTOKEN_CACHE_DIR) at
the offline mirror, so nothing here touches the network.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tinylm.config import GPTConfig, TrainConfig
from tinylm.model.gpt import GPT

# One intra-op thread: the machine's 2 cores are shared, and tiny ops gain nothing from a second thread
# (with busy cores, OpenMP's spin-waiting makes 2 threads tens of times slower than 1).
torch.set_num_threads(1)

TINY_VOCAB = 37
TINY_SHAPE = dict(vocab_size=TINY_VOCAB, block_size=16, n_layer=2, n_head=2, n_embd=32)
TINY_TRAIN = dict(batch_size=4, max_steps=8, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4, eval_interval=0,
                  log_interval=1, eval_batch_size=64, seed=0, dtype="float32")


@pytest.fixture
def tiny_config():
    """Factory: the tiny GPTConfig (2 layers, 2 heads, 32 wide, context 16), with overrides."""

    def make(**overrides) -> GPTConfig:
        return GPTConfig(**{**TINY_SHAPE, **overrides})

    return make


@pytest.fixture
def make_model(tiny_config):
    """Factory: a tiny GPT whose initial weights depend only on `seed`."""

    def make(seed: int = 0, **overrides) -> GPT:
        torch.manual_seed(seed)
        return GPT(tiny_config(**overrides))

    return make


@pytest.fixture
def train_config():
    """Factory: a TrainConfig for a few-step CPU run in fp32, with overrides."""

    def make(**overrides) -> TrainConfig:
        return TrainConfig(**{**TINY_TRAIN, **overrides})

    return make


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A data folder ($TINYLM_DATA_DIR layout) with shakespeare_char prepared once from the offline mirror."""
    from tinylm.train.recipes import prepare_shakespeare_char

    root = tmp_path_factory.mktemp("data")
    prepare_shakespeare_char(root / "shakespeare_char")
    return root


@pytest.fixture
def tokens():
    """Token splits with some structure (a noisy repeating pattern), so a model can learn from them."""
    rng = np.random.default_rng(0)
    pattern = np.arange(TINY_VOCAB).repeat(2)
    ids = np.tile(pattern, 40)
    noise = rng.random(ids.size) < 0.1
    ids[noise] = rng.integers(0, TINY_VOCAB, noise.sum())
    ids = ids.astype(np.uint16)
    return ids[:2400], ids[2400:]


class Bigram(nn.Module):
    """A lookup-table language model: logits for the next token depend only on the current one."""

    def __init__(self, vocab_size: int, block_size: int = 16):
        super().__init__()
        self.table = nn.Embedding(vocab_size, vocab_size)
        self.config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=1, n_head=1, n_embd=1)

    def forward(self, idx, targets=None):
        return self.table(idx), None


class FixedLogits(nn.Module):
    """A 'model' whose next-token logits are the same whatever the input."""

    def __init__(self, logits: torch.Tensor, block_size: int = 8):
        super().__init__()
        self.register_buffer("logits", logits.float())
        self.config = GPTConfig(vocab_size=logits.numel(), block_size=block_size, n_layer=1, n_head=1, n_embd=1)
        self.seen_lengths: list[int] = []

    def forward(self, idx, targets=None):
        return self.head(self.hidden_states(idx)), None

    def hidden_states(self, idx):
        self.seen_lengths.append(idx.size(1))
        return torch.zeros(*idx.shape, 1)

    def head(self, hidden):
        return self.logits.expand(*hidden.shape[:-1], -1)


@pytest.fixture
def bigram():
    def make(vocab_size: int = TINY_VOCAB, seed: int = 0) -> Bigram:
        torch.manual_seed(seed)
        return Bigram(vocab_size)

    return make


@pytest.fixture
def fixed_logits_model():
    return FixedLogits


@pytest.fixture(scope="session")
def sentencepiece_model(tmp_path_factory):
    """A 400-piece BPE SentencePiece model file of 200 kB of Shakespeare, trained the way Llama's was: byte
    fallback (no text is unknown), digits split, whitespace kept as written; <unk> 0, BOS 1, EOS 2."""
    spm = pytest.importorskip("sentencepiece")
    from tinylm.download import mirror_dir

    folder = tmp_path_factory.mktemp("sentencepiece")
    text = folder / "shakespeare.txt"
    text.write_text((mirror_dir() / "tinyshakespeare" / "input.txt").read_text()[:200_000])
    spm.SentencePieceTrainer.train(input=str(text), model_prefix=str(folder / "tokenizer"), vocab_size=400,
                                   model_type="bpe", byte_fallback=True, split_digits=True,
                                   remove_extra_whitespaces=False, normalization_rule_name="identity",
                                   character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    return folder / "tokenizer.model"
