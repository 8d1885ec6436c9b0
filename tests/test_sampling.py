"""The samplers: what each one allows, the distributions they draw from, and their argument checks."""

import math

import pytest
import torch

from tinylm.generate.sampling import Sampling, choose_next, keep_top_k, keep_top_p, penalize_repetition

DRAWS = 40_000


def draw(logits: torch.Tensor, sampling: Sampling, draws: int = DRAWS) -> torch.Tensor:
    """`draws` samples from one row of logits, drawn as a batch."""
    return choose_next(logits.expand(draws, -1), sampling, sampling.generator(torch.device("cpu")))


def assert_frequencies_match(samples: torch.Tensor, expected: torch.Tensor) -> None:
    """Every token's observed frequency within 5 standard errors of its expected probability."""
    observed = torch.bincount(samples, minlength=expected.numel()).double() / samples.numel()
    expected = expected.double()
    tolerance = 5 * torch.sqrt(expected * (1 - expected) / samples.numel()) + 1e-9
    assert torch.all((observed - expected).abs() <= tolerance), (observed - expected).abs().max()


@pytest.fixture
def logits():
    return torch.randn(30, generator=torch.Generator().manual_seed(0)) * 1.5


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_sampling_follows_the_softmax_of_logits_over_temperature(logits, temperature):
    samples = draw(logits, Sampling(temperature=temperature, seed=0))
    assert_frequencies_match(samples, torch.softmax(logits / temperature, dim=-1))


def test_temperature_zero_is_argmax_whatever_the_seed(logits):
    batch = torch.randn(50, 30, generator=torch.Generator().manual_seed(1))
    for seed in (None, 1, 2):
        assert torch.equal(choose_next(batch, Sampling(temperature=0, seed=seed)), batch.argmax(-1))


@pytest.mark.parametrize("k", [1, 5, 29])
def test_top_k_never_leaves_the_k_best_and_renormalises(logits, k):
    samples = draw(logits, Sampling(top_k=k, seed=1))
    best = torch.topk(logits, k).indices
    assert set(samples.tolist()) == set(best.tolist())  # inside the k best, and each of them reachable
    expected = torch.zeros_like(logits)
    expected[best] = torch.softmax(logits[best], dim=-1)
    assert_frequencies_match(samples, expected)


def test_top_k_keeps_exactly_k_even_when_logits_tie():
    flat = torch.zeros(4, 10)
    assert torch.isfinite(keep_top_k(flat, 3)).sum(dim=-1).tolist() == [3, 3, 3, 3]


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.999])
def test_top_p_samples_only_the_smallest_set_that_reaches_p(logits, p):
    probs = torch.softmax(logits, dim=-1)
    order = probs.argsort(descending=True)
    mass_before = probs[order].cumsum(0) - probs[order]
    nucleus = order[mass_before < p]  # by the definition: every token whose more likely tokens hold < p
    assert probs[nucleus].sum() >= p and probs[nucleus[:-1]].sum() < p  # the smallest such set
    samples = draw(logits, Sampling(top_p=p, seed=2))
    assert set(samples.tolist()) <= set(nucleus.tolist())
    expected = torch.zeros_like(probs)
    expected[nucleus] = probs[nucleus] / probs[nucleus].sum()
    assert_frequencies_match(samples, expected)


def test_top_p_keeps_the_most_likely_token_even_when_it_alone_exceeds_p():
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    assert torch.isfinite(keep_top_p(logits, 0.01)).tolist() == [[True, False, False]]
    assert torch.equal(keep_top_p(logits, 1.0), logits)


def test_filters_compose_top_k_then_top_p(logits):
    probs_k = torch.softmax(keep_top_k(logits[None], 8), dim=-1)
    both = keep_top_p(keep_top_k(logits[None], 8), 0.6)
    kept = torch.isfinite(both)[0]
    assert kept.sum() <= 8 and probs_k[0][kept].sum() >= 0.6  # the nucleus is taken of the top-k distribution


def test_repetition_penalty_is_ctrls_rule():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert penalize_repetition(logits, seen, 2.0).tolist() == [[1.0, -4.0, 2.0, -2.0]]


def test_repetition_penalty_breaks_a_greedy_loop():
    logits = torch.tensor([[3.0, 2.5, 0.0]])
    seen = torch.tensor([[True, False, False]])
    assert choose_next(logits, Sampling(temperature=0), seen=seen).item() == 0
    assert choose_next(logits, Sampling(temperature=0, repetition_penalty=1.5), seen=seen).item() == 1


def test_seeded_draws_repeat_and_leave_the_global_generator_alone(logits):
    state = torch.get_rng_state()
    a = draw(logits, Sampling(seed=7), draws=100)
    assert torch.equal(a, draw(logits, Sampling(seed=7), draws=100))
    assert not torch.equal(a, draw(logits, Sampling(seed=8), draws=100))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("kwargs, message", [
    (dict(temperature=-0.1), "temperature must be >= 0"),
    (dict(temperature=math.nan), "temperature must be >= 0"),
    (dict(top_k=0), "top_k must be at least 1"),
    (dict(top_k=-3), "top_k must be at least 1"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_p=-0.2), r"top_p must be in \(0, 1\]"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be > 0"),
])
def test_bad_arguments_are_value_errors_that_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Sampling(**kwargs)
