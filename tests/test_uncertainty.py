"""Seed spreads, the comparison verdict, and Wilson's interval against a direct computation."""

import math
import random

import pytest

from tinylm.errors import InputError
from tinylm.eval.uncertainty import (
    compare,
    null_pass_rate,
    paired,
    percent,
    same_steps,
    separated,
    spread,
    steady,
    told_apart,
    wilson_interval,
)


def test_spread_is_mean_min_max():
    s = spread([1.0, 1.5, 1.2])
    assert s.mean == pytest.approx(3.7 / 3)
    assert (s.low, s.high, s.n) == (1.0, 1.5, 3)
    assert s.format(2) == "1.23 ± 0.25 (3 seeds)"
    assert spread([2.0]).format(1, replicate="round") == "2.0 ± 0.0 (1 round)"


def test_spread_refuses_empty_and_diverged():
    with pytest.raises(ValueError, match="at least one"):
        spread([])
    with pytest.raises(ValueError, match="diverged"):
        spread([1.0, float("nan")])


def test_compare_names_winner_and_gives_the_verdict_by_the_rule():
    text = compare("gpt2", [1.30, 1.32, 1.31], "llama", [1.20, 1.22, 1.21])
    assert text.startswith("llama beats gpt2 on val loss by 0.100 (means 1.210 vs 1.310;")  # the winner's mean first
    assert ("told apart: every seed of llama beats every seed of gpt2 (were there no real difference, one arm's "
            "seeds would all beat the other's, either way round, 10% of the time)") in text  # 2 / C(6, 3): both ways
    two_seeds = compare("gpt2", [1.30, 1.32], "llama", [1.20, 1.22])
    assert "not told apart: the ranges do not overlap, but with fewer than 3 seeds" in two_seeds and "33%" in two_seeds
    overlapping = compare("a", [1.0, 1.3, 1.2], "b", [1.1, 1.2, 1.25])
    assert overlapping.endswith("not told apart: the seeds overlap")
    higher = compare("a", [0.5, 0.6, 0.55], "b", [0.7, 0.8, 0.75], lower_is_better=False, metric="accuracy")
    assert higher.startswith("b beats a on accuracy") and "told apart: every seed of b" in higher
    timing = compare("eager", [10.0, 11.0, 10.5], "compiled", [5.0, 6.0, 5.5], metric="ms", replicate="round")
    assert "told apart: every round of compiled beats every round of eager" in timing
    assert separated([0.5, 0.6], [0.7, 0.8]) and not separated([0.5, 0.75], [0.7, 0.8])
    assert told_apart([1, 2, 3], [4, 5, 6]) and not told_apart([1, 2], [4, 5]) and not told_apart([1, 5, 3], [4, 6, 7])


def test_the_null_pass_rate_is_what_a_simulation_of_no_difference_gives():
    """Two arms drawn from one distribution: how often do their ranges not overlap? The formula, 2 / C(n_a + n_b, n_a),
    against 20,000 simulated experiments at each size."""
    rng = random.Random(0)
    for n_a, n_b in ((2, 2), (3, 3), (4, 4), (3, 5)):
        trials = 20_000
        hits = 0
        for _ in range(trials):
            a = [rng.gauss(0, 1) for _ in range(n_a)]
            b = [rng.gauss(0, 1) for _ in range(n_b)]
            hits += separated(a, b)
        assert hits / trials == pytest.approx(null_pass_rate(n_a, n_b), abs=0.01), (n_a, n_b)
    assert null_pass_rate(2, 2) == pytest.approx(1 / 3) and null_pass_rate(3, 3) == pytest.approx(0.1)


def test_wilson_matches_formula_and_coverage():
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)  # the textbook value for 50/100
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == pytest.approx(1.0)
    # Coverage: the 95% interval holds the true p in about 95% of simulated experiments.
    rng, p, n, trials = random.Random(0), 0.3, 100, 2000
    covered = 0
    for _ in range(trials):
        k = sum(rng.random() < p for _ in range(n))
        low, high = wilson_interval(k, n)
        covered += low <= p <= high
    assert 0.92 < covered / trials < 0.98
    with pytest.raises(ValueError):
        wilson_interval(3, 0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    assert math.isclose(sum(wilson_interval(30, 100)) / 2, (0.3 + 1.96**2 / 200) / (1 + 1.96**2 / 100))


def test_mcnemar_counts_the_discordant_problems_and_matches_the_binomial_tail():
    first = [True, True, False, False, False, True] + [False] * 10
    second = [True, False, True, False, True, True] + [True] * 10
    result = paired(first, second)
    assert (result.gained, result.lost, result.both, result.neither) == (12, 1, 2, 1)
    assert result.p_value == pytest.approx(2 * (1 + 13) / 2**13)  # P(X <= 1), X ~ Bin(13, 1/2), both tails
    assert paired([True, False], [True, False]).p_value == 1.0  # nothing differs: no evidence either way
    assert paired([False] * 5 + [True] * 5, [True] * 5 + [False] * 5).p_value == 1.0  # 5 gained, 5 lost
    with pytest.raises(InputError):
        paired([True], [True, False])


def test_the_paired_rule_names_the_arm_with_more_passes_only_below_the_level():
    six_gained = paired([False] * 6 + [True] * 4, [True] * 10)  # p = 2 / 2**6 = 0.031
    assert six_gained.winner("base", "tuned") == "tuned"
    assert paired([True] * 10, [False] * 6 + [True] * 4).winner("base", "tuned") == "base"
    assert six_gained.winner("base", "tuned", level=0.01) == "not told apart"
    five_gained = paired([False] * 5 + [True] * 5, [True] * 10)  # p = 2 / 2**5 = 0.0625
    assert five_gained.winner("base", "tuned") == "not told apart"


def test_a_paired_description_names_what_was_scored_and_its_outcomes():
    result = paired([True, False, False], [True, True, False])
    assert result.describe("A", "B", items="items", right="right", wrong="wrong") == (
        "B against A on the same 3 items: 1 wrong -> right, 0 right -> wrong (1 right for both, 1 for neither); "
        "McNemar's exact p = 1")
    assert result.describe("A", "B").startswith("B against A on the same 3 problems: 1 fail -> pass, 0 pass -> fail")


def test_two_computations_of_the_same_steps_agree_up_to_float32_rounding():
    reference = [10.0, 9.5, 9.0]
    assert same_steps([10.0005, 9.5, 9.0], reference) == (pytest.approx(5e-4), True)  # 5e-4 <= 1e-4 * 10
    gap, agree = same_steps([10.0, 9.5, 9.01], reference)
    assert gap == pytest.approx(0.01) and not agree
    with pytest.raises(ValueError):
        same_steps([10.0], reference)  # steps that do not pair up are no comparison


def test_a_timing_is_steady_while_its_slowest_block_is_within_one_and_a_half_of_its_fastest():
    assert steady([10.0, 12.0, 15.0]) and not steady([10.0, 12.0, 15.1])


def test_mcnemar_rejects_a_true_null_about_as_often_as_its_level():
    """Two models that pass each problem independently with the same chance: p < 0.05 in at most ~5% of trials
    (the exact test is conservative), and far more often when the second passes more."""
    generator = random.Random(0)

    def rejections(p_first, p_second, trials=400, n=120):
        hits = 0
        for _ in range(trials):
            first = [generator.random() < p_first for _ in range(n)]
            second = [generator.random() < p_second for _ in range(n)]
            hits += paired(first, second).p_value < 0.05
        return hits / trials

    assert rejections(0.6, 0.6) <= 0.07
    assert rejections(0.5, 0.75) >= 0.8


def test_a_chance_below_one_percent_keeps_a_decimal():
    """Six seeds against six: 2 / C(12, 6) = 0.0022, printed as 0.2%, not rounded to 0%."""
    text = compare("a", [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "b", [2.0, 2.1, 2.2, 2.3, 2.4, 2.5])
    assert "either way round, 0.2% of the time" in text


def test_percent_never_prints_a_nonzero_chance_as_zero():
    assert [percent(r) for r in (0.1, 2 / math.comb(6, 3), 2 / math.comb(12, 6), 2 / math.comb(20, 10), 0.0)] == [
        "10%", "10%", "0.2%", "0.0011%", "0%"]
