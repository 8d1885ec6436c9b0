"""How sure a measurement is: the spread over seeds, and a confidence interval for an accuracy.

A course comparison is an experiment: each arm runs at several seeds under the same budget, and a claim such as
"RMSNorm beats LayerNorm" is made only when each arm has at least MIN_SEEDS = 3 seeds and every seed of one beats
every seed of the other. Why 3: were the arms the same, the chance that one arm's results all lie below the other's,
either way round, is 2 / C(n_a + n_b, n_a) (`null_pass_rate`): 1 in 3 with 2 seeds each, 1 in 10 with 3. `compare`
states the verdict in one sentence that a notebook prints, so that the prose never types a figure a re-run could
change. A timing has verdicts too: whether its blocks ran at one speed (`steady`), and whether two computations of
the same steps agree up to float32 rounding (`same_steps`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from ..errors import InputError


@dataclass(frozen=True)
class Spread:
    """Mean, lowest and highest of one arm's values over its seeds."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def half_range(self) -> float:
        return (self.high - self.low) / 2

    def format(self, digits: int = 3, replicate: str = "seed") -> str:
        """'1.234 ± 0.012 (2 seeds)': the ± is half the range over the replicates (seeds, or rounds of a
        timing), not a standard error."""
        count = f"{self.n} {replicate}" + ("" if self.n == 1 else "s")
        return f"{self.mean:.{digits}f} ± {self.half_range:.{digits}f} ({count})"


def spread(values: Sequence[float]) -> Spread:
    """Summarise one arm's results over seeds; ValueError on an empty or non-finite list."""
    values = [float(v) for v in values]
    if not values:
        raise InputError("spread needs at least one value (one per seed)")
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"spread got a non-finite value among {values}: a run diverged; look at its losses first")
    return Spread(mean=sum(values) / len(values), low=min(values), high=max(values), n=len(values))


MIN_SEEDS = 3  # a verdict needs at least this many seeds per arm (the module docstring says why)


def null_pass_rate(n_a: int, n_b: int) -> float:
    """The chance that two arms of n_a and n_b results with no real difference still have ranges that do not overlap
    (all of one arm below all of the other, either way round): 2 / C(n_a + n_b, n_a), for results without ties."""
    return 2 / math.comb(n_a + n_b, n_a)


def separated(a: Sequence[float], b: Sequence[float]) -> bool:
    """True when every seed of one arm beats every seed of the other: the ranges over seeds do not overlap."""
    sa, sb = spread(a), spread(b)
    return sa.high < sb.low or sb.high < sa.low


def told_apart(a: Sequence[float], b: Sequence[float], min_seeds: int = MIN_SEEDS) -> bool:
    """The rule a verdict needs: at least `min_seeds` results per arm, and ranges that do not overlap."""
    return min(len(a), len(b)) >= min_seeds and separated(a, b)


def percent(rate: float) -> str:
    """A chance as the verdicts print it: whole percents, one decimal below 1% (2 / C(12, 6) is 0.2%, not 0%), and two
    significant figures below 0.1% (2 / C(20, 10) is 0.0011%)."""
    if rate < 0.001:
        return f"{100 * rate:.2g}%" if rate > 0 else "0%"
    return f"{rate:.0%}" if rate >= 0.01 else f"{rate:.1%}"


def compare(name_a: str, a: Sequence[float], name_b: str, b: Sequence[float], *, lower_is_better: bool = True,
            metric: str = "val loss", digits: int = 3, replicate: str = "seed") -> str:
    """One sentence: which arm came out ahead on `metric`, by how much (difference of means, the winner's mean first),
    and the verdict by the module's rule: "told apart" (at least MIN_SEEDS replicates per arm, seeds or rounds of a
    timing, and ranges that do not overlap) or "not told apart"."""
    sa, sb = spread(a), spread(b)
    a_better = sa.mean < sb.mean if lower_is_better else sa.mean > sb.mean
    winner, loser = (name_a, name_b) if a_better else (name_b, name_a)
    gap = abs(sa.mean - sb.mean)
    widest = max(sa.high - sa.low, sb.high - sb.low)
    if told_apart(a, b):
        verdict = (f"told apart: every {replicate} of {winner} beats every {replicate} of {loser} (were there no "
                   f"real difference, one arm's {replicate}s would all beat the other's, either way round, "
                   f"{percent(null_pass_rate(len(a), len(b)))} of the time)")
    elif separated(a, b):
        verdict = (f"not told apart: the ranges do not overlap, but with fewer than {MIN_SEEDS} {replicate}s two "
                   f"arms with no real difference do that, either way round, "
                   f"{percent(null_pass_rate(len(a), len(b)))} of the time")
    else:
        verdict = f"not told apart: the {replicate}s overlap"
    winner_mean, loser_mean = (sa.mean, sb.mean) if a_better else (sb.mean, sa.mean)
    return (f"{winner} beats {loser} on {metric} by {gap:.{digits}f} (means {winner_mean:.{digits}f} vs "
            f"{loser_mean:.{digits}f}; widest range over {replicate}s {widest:.{digits}f}): {verdict}")


UNSTEADY = 1.5  # the slowest block of a timing this many times the fastest: the machine's speed was not steady
SAME_STEPS = 1e-4  # float32 sums in another order: two computations of the same steps differ by about this share


def steady(block_times: Sequence[float]) -> bool:
    """Whether consecutive blocks of a timing ran at one speed: the slowest within UNSTEADY times the fastest."""
    return max(block_times) <= UNSTEADY * min(block_times)


def same_steps(first: Sequence[float], second: Sequence[float]) -> tuple[float, bool]:
    """(largest difference, whether they agree) of two computations' losses over the same steps from the same weights
    (compiled and eager, tinylm's GPT and the reference): equal up to float32 rounding in another order, at most
    SAME_STEPS of the largest loss of `second`."""
    gap = max(abs(a - b) for a, b in zip(first, second, strict=True))
    return gap, gap <= SAME_STEPS * max(map(abs, second))


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The (low, high) confidence interval of the proportion successes/n; z = 1.96 gives 95%. Wilson's score interval
    stays inside [0, 1] and behaves at 0% and 100%, where the textbook p ± z·sqrt(p(1-p)/n) collapses to a point."""
    if n <= 0:
        raise InputError(f"wilson_interval needs at least one trial, got n={n}")
    if not 0 <= successes <= n:
        raise InputError(f"wilson_interval: successes={successes} must lie between 0 and n={n}")
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Paired:
    """Two models' verdicts on the same problems: how many only the second passed (`gained`), only the first
    (`lost`), both, neither; `p_value`, McNemar's exact two-sided test of "as likely to gain as to lose"."""

    gained: int
    lost: int
    both: int
    neither: int
    p_value: float

    def winner(self, first: str, second: str, level: float = 0.05) -> str:
        """The paired rule: the name of the arm that passed more, if p < `level`; else "not told apart"."""
        if self.p_value >= level:
            return "not told apart"
        return second if self.gained > self.lost else first

    def describe(self, first: str, second: str, items: str = "problems", right: str = "pass",
                 wrong: str = "fail") -> str:
        """One sentence; `items`, `right` and `wrong` name what was scored and its two outcomes."""
        return (f"{second} against {first} on the same {self.gained + self.lost + self.both + self.neither} {items}: "
                f"{self.gained} {wrong} -> {right}, {self.lost} {right} -> {wrong} ({self.both} {right} for both, "
                f"{self.neither} for neither); McNemar's exact p = {self.p_value:.3g}")


def paired(first: Sequence[bool], second: Sequence[bool]) -> Paired:
    """McNemar's exact test on two verdict lists of the same problems, in order. Only the problems where the two
    differ count: under "no difference" each is a fair coin, so p is twice the binomial tail of the rarer outcome
    (capped at 1). It measures the luck of the problems drawn, not the spread over training seeds."""
    if len(first) != len(second):
        raise InputError(f"paired verdicts need the same problems: {len(first)} against {len(second)}")
    gained = sum(not a and b for a, b in zip(first, second))
    lost = sum(a and not b for a, b in zip(first, second))
    both = sum(a and b for a, b in zip(first, second))
    discordant, rarer = gained + lost, min(gained, lost)
    tail = sum(math.comb(discordant, k) for k in range(rarer + 1)) / 2**discordant if discordant else 1.0
    return Paired(gained, lost, both, len(first) - gained - lost - both, min(1.0, 2 * tail))
