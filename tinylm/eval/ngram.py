"""Count-based baselines: what a table of character (or token) pair counts can do, and the entropy bounds on it.

A bigram model predicts the next token from the current one alone; its best table for a text is the text's own pair
counts, the baseline a GPT must beat (notebooks 1 and 3). The bounds are Shannon's: no bigram table, even one fitted
to the text, scores it below `conditional_entropy` (Gibbs' inequality: the cross-entropy of a distribution against
the true one is at least the true one's entropy), and no model that ignores the context scores it below `entropy`.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError


def _as_ids(tokens) -> torch.Tensor:
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64) if not isinstance(tokens, torch.Tensor) else tokens)
    if ids.dim() != 1 or len(ids) < 2:
        raise InputError(f"need a 1-D stream of at least 2 token ids, got shape {tuple(ids.shape)}")
    return ids.long().cpu()


def pair_counts(tokens, vocab_size: int) -> torch.Tensor:
    """(vocab_size, vocab_size) float64 counts: [a, b] = how often b follows a in `tokens`."""
    ids = _as_ids(tokens)
    if int(ids.max()) >= vocab_size or int(ids.min()) < 0:
        raise InputError(f"token ids must lie in [0, {vocab_size}), got {int(ids.min())}..{int(ids.max())}")
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.float64), accumulate=True)
    return counts


def bigram_log_probs(tokens, vocab_size: int, alpha: float = 1.0) -> torch.Tensor:
    """log P(next | current) from the pair counts of `tokens`, plus `alpha` to every count; row a sums to 1 in
    probability, so that a pair never seen in `tokens` is not impossible on new text. alpha = 0 leaves pairs never
    seen at -inf (and a row never seen at all undefined: nan)."""
    if alpha < 0:
        raise InputError(f"alpha must be >= 0, got {alpha}")
    counts = pair_counts(tokens, vocab_size) + alpha
    return (counts / counts.sum(dim=1, keepdim=True)).log()


def bigram_loss(log_probs: torch.Tensor, tokens) -> float:
    """The cross-entropy of a bigram table on `tokens`: the mean of -log P(tokens[t+1] | tokens[t]), in nats."""
    ids = _as_ids(tokens)
    return -log_probs[ids[:-1], ids[1:]].double().mean().item()


def _entropy_of_rows(counts: torch.Tensor) -> float:
    """Σ over rows of (row total / grand total) × the entropy of the row's distribution, in nats."""
    total = counts.sum()
    probs = counts / counts.sum(dim=-1, keepdim=True).clamp(min=1)
    terms = torch.where(counts > 0, counts * probs.clamp(min=1e-300).log(), torch.zeros_like(counts))
    return (-terms.sum() / total).item()


def entropy(tokens, vocab_size: int) -> float:
    """H(next): the entropy of the targets' own frequencies, the lowest loss of a model that ignores all context."""
    return _entropy_of_rows(pair_counts(tokens, vocab_size).sum(dim=0))


def conditional_entropy(tokens, vocab_size: int) -> float:
    """H(next | current) from the pair counts of `tokens`: the lowest loss any bigram table reaches on `tokens`
    (it equals `bigram_loss(bigram_log_probs(tokens, V, alpha=0), tokens)`)."""
    return _entropy_of_rows(pair_counts(tokens, vocab_size))
