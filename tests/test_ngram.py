"""Count-based bigram baselines: counts against a loop, the entropies against their definitions, and Gibbs'
inequality (no bigram table scores a text below its own conditional entropy)."""

import math
from collections import Counter

import numpy as np
import pytest
import torch

from tinylm.errors import InputError
from tinylm.eval.ngram import bigram_log_probs, bigram_loss, conditional_entropy, entropy, pair_counts


def random_text(n=5_000, vocab=7, seed=0):
    """A Markov chain, so that the current token says something about the next one."""
    rng = np.random.default_rng(seed)
    transition = rng.dirichlet(np.full(vocab, 0.3), size=vocab)
    ids = [0]
    for _ in range(n - 1):
        ids.append(rng.choice(vocab, p=transition[ids[-1]]))
    return np.array(ids, dtype=np.uint16)


def test_pair_counts_are_the_pairs_counted_one_by_one():
    ids = random_text(500)
    pairs = Counter(zip(ids[:-1].tolist(), ids[1:].tolist()))
    counts = pair_counts(ids, 7)
    assert counts.sum() == len(ids) - 1
    assert all(counts[a, b] == pairs[(a, b)] for a in range(7) for b in range(7))


def test_entropies_follow_their_definitions():
    ids = random_text()
    targets = Counter(ids[1:].tolist())
    n = len(ids) - 1
    assert math.isclose(entropy(ids, 7), -sum(c / n * math.log(c / n) for c in targets.values()), rel_tol=1e-9)
    by_current = Counter(ids[:-1].tolist())
    pairs = Counter(zip(ids[:-1].tolist(), ids[1:].tolist()))
    expected = -sum(c / n * math.log(c / by_current[a]) for (a, _), c in pairs.items())
    assert math.isclose(conditional_entropy(ids, 7), expected, rel_tol=1e-9)
    assert conditional_entropy(ids, 7) < entropy(ids, 7)  # conditioning on the current token lowers the entropy
    assert conditional_entropy([0, 1, 0, 1, 0, 1], 2) == 0.0  # the next token is certain given the current one
    assert math.isclose(entropy([0, 1, 0, 1, 0], 2), math.log(2))


def test_no_bigram_table_scores_a_text_below_its_conditional_entropy():
    ids = random_text()
    bound = conditional_entropy(ids, 7)
    fitted = bigram_loss(bigram_log_probs(ids, 7, alpha=0.0), ids)
    assert math.isclose(fitted, bound, rel_tol=1e-9), "the text's own counts reach the bound exactly"
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):  # any other table does worse (Gibbs' inequality)
        table = torch.log_softmax(torch.randn(7, 7, generator=generator, dtype=torch.float64), dim=-1)
        assert bigram_loss(table, ids) > bound
    for alpha in (0.1, 1.0, 10.0):  # smoothing moves the table away from the counts
        assert bigram_loss(bigram_log_probs(ids, 7, alpha), ids) > bound


def test_smoothed_rows_are_distributions_and_bad_input_is_refused():
    probs = bigram_log_probs(random_text(50), 7, alpha=1.0).exp()
    assert torch.allclose(probs.sum(dim=1), torch.ones(7, dtype=torch.float64))
    assert (probs > 0).all()
    with pytest.raises(InputError):
        pair_counts([0, 9], 7)
    with pytest.raises(InputError):
        pair_counts([3], 7)
    with pytest.raises(InputError):
        bigram_log_probs([0, 1], 7, alpha=-1)
