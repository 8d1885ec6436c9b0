"""Scaling laws on a laptop (notebook 13): an IsoFLOP sweep, the parabolas and power laws fitted to it, and a
prediction. As in Hoffmann et al.'s approach 2 ("Chinchilla", 2022): several model sizes at each of several compute
budgets, a parabola in log N per budget whose vertex is N_opt(C), then power laws across budgets. The sizes are GPT-2
blocks of one depth (`LADDER`); compute is C = 6·N·D with N the non-embedding parameters, and a budget becomes whole
optimizer steps, never seconds, so that a busy machine changes how long the sweep takes and never what it measures.
The fits are numpy only, with standard errors and a bootstrap; `predict` extrapolates to a budget no run has used.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..config import GPTConfig, TrainConfig
from ..errors import InputError
from ..model.gpt import GPT
from ..train.trainer import Trainer

# Hoffmann et al. 2022, Table 2: approach 2 (IsoFLOP profiles) found N_opt ∝ C^0.49 and D_opt ∝ C^0.51; Kaplan et
# al. 2020 had found N_opt ∝ C^0.73 and D_opt ∝ C^0.27.
CHINCHILLA_APPROACH_2 = {"a": 0.49, "b": 0.51}
KAPLAN_2020 = {"a": 0.73, "b": 0.27}

# (n_layer, n_embd): two layers and a width from 16 to 128, about 6.6 thousand to 400 thousand non-embedding
# parameters. One depth for every size, so that the sizes differ in one way only: in the probes behind notebook 13
# a third layer moved the loss by more than a change of seed did, in either direction depending on the budget, and
# a family that mixed depths would draw that into its IsoFLOP profiles. Two layers, not one: a single layer cannot
# form the two-step circuits (induction heads) that copy from earlier in the context (Elhage et al. 2021, "A
# Mathematical Framework for Transformer Circuits"; Olsson et al. 2022, "In-context Learning and Induction Heads").
LADDER: tuple[tuple[int, int], ...] = tuple((2, width) for width in (16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128))
HEAD_SIZE = 8  # channels per attention head, the same for every size: width changes the number of heads


@dataclass(frozen=True)
class ModelSize:
    """One size of the sweep: its name ("depth x width"), its GPTConfig and N, its non-embedding parameters."""

    name: str
    config: GPTConfig
    parameters: int


def non_embedding_parameters(config: GPTConfig) -> int:
    """N of `config`: every parameter but the token and position tables, counted on the meta device (no memory)."""
    with torch.device("meta"):
        model = GPT(config)
    return model.num_parameters(exclude_position_embeddings=True) - model.transformer.wte.weight.numel()


def model_sizes(shapes: Sequence[tuple[int, int]], vocab_size: int, block_size: int,
                head_size: int = HEAD_SIZE) -> list[ModelSize]:
    """A GPT-2 block GPTConfig for each (n_layer, n_embd) of `shapes`, with n_embd / head_size heads, smallest N
    first. ValueError if a width is not a multiple of the head size."""
    sizes = []
    for n_layer, n_embd in shapes:
        if n_embd % head_size:
            raise InputError(f"width {n_embd} is not a multiple of the head size {head_size}")
        config = GPTConfig(vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_head=n_embd // head_size,
                           n_embd=n_embd)
        sizes.append(ModelSize(f"{n_layer}x{n_embd}", config, non_embedding_parameters(config)))
    return sorted(sizes, key=lambda size: size.parameters)


def training_flops(parameters: float, tokens: float) -> float:
    """C = 6·N·D: two FLOPs per parameter and token for the forward pass's multiply-adds, four for the backward."""
    return 6 * parameters * tokens


def steps_for_budget(budget: float, parameters: int, tokens_per_step: int) -> int:
    """Optimizer steps that spend `budget` FLOPs on a model of N = `parameters` (C = 6·N·D): the nearest whole step,
    at least one. The tokens trained are then within half a step's tokens of C / (6N)."""
    return max(1, round(budget / training_flops(parameters, tokens_per_step)))


@dataclass(frozen=True)
class SweepRun:
    """One size trained at one budget: N, the budget C, the steps and tokens D it got (6·N·D is C within one
    step), the validation loss over the whole held-out split at the end, and the seconds of training."""

    size: str
    parameters: int
    budget: float
    steps: int
    tokens: int
    val_loss: float
    seconds: float


def run_config(template: TrainConfig, steps: int) -> TrainConfig:
    """`template` for a run of `steps` optimizer steps: the cosine reaches min_lr on the last step, the warmup is
    the template's but at most a tenth of the run, and the only evaluation is the final one."""
    return dataclasses.replace(template, max_steps=steps, warmup_steps=min(template.warmup_steps, steps // 10),
                               eval_interval=0, log_interval=steps, sample_interval=0, max_seconds=None)


def train_size(size: ModelSize, budget: float, template: TrainConfig, train_data, val_data, *,
               device: torch.device | str, seed: int = 0) -> SweepRun:
    """Train `size` for the steps `budget` buys (template's batch, rate and schedule; see `run_config`) from the
    initial weights that `seed` draws, in memory, and score it on all of `val_data`."""
    tokens_per_step = template.batch_size * template.grad_accum_steps * size.config.block_size
    steps = steps_for_budget(budget, size.parameters, tokens_per_step)
    torch.manual_seed(seed)
    config = dataclasses.replace(run_config(template, steps), seed=seed)
    trainer = Trainer(GPT(size.config), config, train_data, val_data, out_dir=None, device=device)
    final = trainer.fit()
    return SweepRun(size.name, size.parameters, budget, steps, steps * tokens_per_step, final["val_loss"],
                    trainer.elapsed)


def run_sweep(sizes: Sequence[ModelSize], budgets: Sequence[float], template: TrainConfig, train_data, val_data, *,
              device: torch.device | str, seed: int = 0, show_progress: bool = True) -> list[SweepRun]:
    """Every size at every budget (`train_size`), budget by budget. The progress bar counts FLOPs (6·N·D), so its
    ETA assumes the FLOPs still to come run at the rate of those done; small models run fewer FLOPs per second than
    large ones, so the ETA is rough, and the sweep's wall time is in the bar's elapsed field."""
    plan = [(budget, size) for budget in budgets for size in sizes]
    total = sum(budget for budget, _ in plan)
    runs = []
    with tqdm(total=total / 1e9, desc="IsoFLOP sweep", disable=not show_progress,
              bar_format="{l_bar}{bar}| {n:,.0f}/{total:,.0f} GFLOP [{elapsed}<{remaining}{postfix}]") as bar:
        for budget, size in plan:
            bar.set_postfix_str(f"C={budget:.1e}, {size.name}")
            runs.append(train_size(size, budget, template, train_data, val_data, device=device, seed=seed))
            bar.update(budget / 1e9)
    return runs


@dataclass(frozen=True)
class Parabola:
    """loss ≈ curvature·(ln N − ln n_opt)² + loss_opt: an IsoFLOP profile near its minimum."""

    curvature: float
    n_opt: float
    loss_opt: float

    def __call__(self, parameters):
        return self.curvature * (np.log(parameters) - math.log(self.n_opt)) ** 2 + self.loss_opt


class NoMinimum(InputError):
    """A profile's losses do not curve upwards: the sizes do not bracket a minimum."""


def fit_parabola(parameters: Sequence[float], losses: Sequence[float]) -> Parabola:
    """The least-squares parabola through (ln N, loss), given by its vertex. ValueError with fewer than three points;
    NoMinimum when it does not open upwards (as when the smallest size is still the best one) or barely does."""
    if len(parameters) < 3:
        raise InputError(f"a parabola needs at least three sizes, got {len(parameters)}")
    c2, c1, c0 = np.polyfit(np.log(np.asarray(parameters, dtype=float)), np.asarray(losses, dtype=float), 2)
    if c2 <= 0:
        raise NoMinimum("the losses do not curve upwards around a minimum: add smaller or larger sizes")
    x_opt = -c1 / (2 * c2)  # where the derivative 2·c2·x + c1 vanishes
    if abs(x_opt) > 700:  # a curvature that is rounding error (losses on a line) puts the vertex beyond any float
        raise NoMinimum(f"the losses barely curve: their vertex lies at e^{x_opt:.0f} parameters")
    return Parabola(curvature=float(c2), n_opt=float(math.exp(x_opt)), loss_opt=float(c0 - c1 * c1 / (4 * c2)))


def profiles(runs: Sequence[SweepRun]) -> dict[float, list[SweepRun]]:
    """The runs of each budget (an IsoFLOP profile), budgets in increasing order, sizes as they were run."""
    return {budget: [run for run in runs if run.budget == budget] for budget in sorted({run.budget for run in runs})}


@dataclass(frozen=True)
class IsoFLOPMinimum:
    """One budget's profile: the fitted parabola, N_opt and D_opt = C / (6·N_opt), and whether the sizes bracket
    the minimum. When they do not (the parabola opens downwards, or its vertex lies beyond the smallest or the
    largest size), the best size trained stands in as a flat parabola through its loss: a bound, not an optimum,
    and never a vertex extrapolated to a size nobody trained."""

    budget: float
    parabola: Parabola
    tokens_opt: float
    bracketed: bool

    @property
    def n_opt(self) -> float:
        return self.parabola.n_opt

    @property
    def loss_opt(self) -> float:
        return self.parabola.loss_opt


def isoflop_minimum(budget: float, parameters: Sequence[float], losses: Sequence[float]) -> IsoFLOPMinimum:
    """The minimum of one budget's profile (see IsoFLOPMinimum for what stands in when there is none)."""
    try:
        parabola = fit_parabola(parameters, losses)
        bracketed = min(parameters) <= parabola.n_opt <= max(parameters)
    except NoMinimum:
        bracketed = False
    if not bracketed:
        best = int(np.argmin(losses))
        parabola = Parabola(0.0, float(parameters[best]), float(losses[best]))
    return IsoFLOPMinimum(budget, parabola, budget / (6 * parabola.n_opt), bracketed)


def isoflop_minima(runs: Sequence[SweepRun]) -> list[IsoFLOPMinimum]:
    """The minimum of every budget's profile in `runs`, budgets in increasing order."""
    return [isoflop_minimum(budget, [run.parameters for run in profile], [run.val_loss for run in profile])
            for budget, profile in profiles(runs).items()]


def t_quantile(probability: float, df: int) -> float:
    """The `probability` quantile of Student's t distribution with `df` degrees of freedom, for probability in
    [0.5, 1): the critical value of a t-interval (0.975 for a 95% one). Substituting t = √df·tan θ turns the density
    into one proportional to cos(θ)^(df − 1) on [0, π/2), so the quantile is where that integral (Simpson's rule)
    reaches (2·probability − 1) of its whole; found by bisection, exact to about 1e-9 for df up to a thousand. With
    df = 1 (Cauchy) the integrand is 1, and the quantile tan(π·(probability − 1/2))."""
    if not 0.5 <= probability < 1 or df < 1:
        raise InputError(f"t_quantile needs a probability in [0.5, 1) and df >= 1, got {probability} and {df}")

    def integral(theta: float, intervals: int = 2000) -> float:  # ∫₀^θ cos(φ)^(df − 1) dφ, Simpson's rule
        values = np.cos(np.linspace(0.0, theta, intervals + 1)) ** (df - 1)
        return theta / (3 * intervals) * (values[0] + 4 * values[1:-1:2].sum() + 2 * values[2:-1:2].sum() + values[-1])

    target, low, high = (2 * probability - 1) * integral(math.pi / 2), 0.0, math.pi / 2
    for _ in range(60):  # each halving of [low, high] adds a bit: 60 of them reach a double's precision
        middle = (low + high) / 2
        low, high = (middle, high) if integral(middle) < target else (low, middle)
    return math.sqrt(df) * math.tan((low + high) / 2)


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient · x^exponent, fitted as a line through (ln x, ln y) by least squares to `points` points.

    `exponent_se` is the classic standard error of the slope: the scatter of the points about the line,
    sqrt(Σ residual² / (n − 2)), over the spread of the ln x, sqrt(Σ (ln x − mean)²). It assumes the points scatter
    independently about a true line, and with n points it rests on n − 2 degrees of freedom, so an interval is a
    t-interval (`exponent_interval`): with three budgets one degree of freedom, and a 95% interval of ±12.7
    standard errors, not ±2; which is why notebook 13 also bootstraps."""

    exponent: float
    coefficient: float
    exponent_se: float
    points: int

    def __call__(self, x):
        return self.coefficient * np.asarray(x, dtype=float) ** self.exponent

    def exponent_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """exponent ± t·se, t the (1 + confidence) / 2 quantile of Student's t at points − 2 degrees of freedom."""
        half = t_quantile((1 + confidence) / 2, self.points - 2) * self.exponent_se
        return self.exponent - half, self.exponent + half


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> PowerLaw:
    """Least squares through (ln x, ln y); ValueError with fewer than three points (none left over to estimate the
    uncertainty from) or a value that is not positive."""
    if len(x) < 3:
        raise InputError(f"a power law with an uncertainty needs at least three points, got {len(x)}")
    if min(x) <= 0 or min(y) <= 0:
        raise InputError("a power law fits positive values only")
    log_x, log_y = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float))
    slope, intercept = np.polyfit(log_x, log_y, 1)
    residuals = log_y - (intercept + slope * log_x)
    scatter = math.sqrt(np.sum(residuals ** 2) / (len(log_x) - 2))
    return PowerLaw(exponent=float(slope), coefficient=float(math.exp(intercept)),
                    exponent_se=scatter / math.sqrt(np.sum((log_x - log_x.mean()) ** 2)), points=len(log_x))


@dataclass(frozen=True)
class LossLaw:
    """L_opt(C) = floor + scale · C^(−decay): a power law that levels off at a floor. It is the form Hoffmann et al.'s
    approach 3, L(N, D) = E + A/N^α + B/D^β, takes along the compute-optimal line, with decay = αβ / (α + β); the
    floor stands for their E, the loss no amount of compute removes, but fitted to a few points it is only the
    value that fits them best."""

    floor: float
    scale: float
    decay: float

    def __call__(self, budget):
        return self.floor + self.scale * np.asarray(budget, dtype=float) ** -self.decay


def fit_loss_law(budgets: Sequence[float], losses: Sequence[float], grid: int = 4000) -> LossLaw:
    """Least squares in L over `grid` floors in [0, lowest loss), each with the line through (ln C, ln(L − floor)).
    Floor 0 is the plain power law, so the fit is never further from the points than that. Three parameters leave
    n − 3 degrees of freedom for n budgets, none with three: the bootstrap gives the uncertainty instead."""
    log_c, losses = np.log(np.asarray(budgets, dtype=float)), np.asarray(losses, dtype=float)
    floors = np.linspace(0, losses.min(), grid, endpoint=False)[:, None]  # (grid, 1): every floor at once
    log_excess = np.log(losses - floors)  # (grid, budgets)
    centred = log_c - log_c.mean()
    slopes = (log_excess * centred).sum(axis=1, keepdims=True) / (centred ** 2).sum()
    intercepts = log_excess.mean(axis=1, keepdims=True) - slopes * log_c.mean()
    errors = ((floors + np.exp(intercepts + slopes * log_c) - losses) ** 2).sum(axis=1)
    best = int(np.argmin(errors))
    return LossLaw(float(floors[best, 0]), float(math.exp(intercepts[best, 0])), float(-slopes[best, 0]))


def nearest_size(sizes: Sequence[ModelSize], parameters: float) -> ModelSize:
    """The size whose N is closest to `parameters` on a log scale, the scale on which the parabola is symmetric."""
    return min(sizes, key=lambda size: abs(math.log(size.parameters / parameters)))


@dataclass(frozen=True)
class Prediction:
    """What the fits say about a budget no run has used yet: N_opt and L_opt from their laws, the size of the ladder
    nearest to N_opt (the one to train), and that size's loss: L_opt plus what the profiles' mean curvature charges
    for its distance from N_opt in ln N (near the minimum a profile is flat: a size 20% off costs curvature × 0.033)."""

    budget: float
    n_opt: float
    loss_opt: float
    size: ModelSize
    loss: float

    @property
    def off_optimum(self) -> float:
        """What the size's distance from N_opt adds to L_opt: loss − loss_opt."""
        return self.loss - self.loss_opt


def loss_opt_law(budgets: Sequence[float], losses: Sequence[float], floor: bool = True) -> LossLaw | PowerLaw:
    """The law of L_opt(C): with a floor (`fit_loss_law`), or a plain power law (`fit_power_law`) when floor=False."""
    return fit_loss_law(budgets, losses) if floor else fit_power_law(budgets, losses)


def predict(minima: Sequence[IsoFLOPMinimum], budget: float, sizes: Sequence[ModelSize],
            floor: bool = True) -> Prediction:
    """Extrapolate N_opt(C) (`fit_power_law`) and L_opt(C) (`loss_opt_law`, with a floor or without) to `budget`,
    and choose what to train."""
    budgets = [minimum.budget for minimum in minima]
    n_opt = float(fit_power_law(budgets, [minimum.n_opt for minimum in minima])(budget))
    loss_opt = float(loss_opt_law(budgets, [minimum.loss_opt for minimum in minima], floor)(budget))
    size = nearest_size(sizes, n_opt)
    curvature = float(np.mean([minimum.parabola.curvature for minimum in minima]))
    return Prediction(budget, n_opt, loss_opt, size, loss_opt + curvature * math.log(size.parameters / n_opt) ** 2)


@dataclass(frozen=True)
class Bootstrap:
    """The exponent a refitted on each resample, shape (resamples,); the floor E of the law with a floor, refitted on
    each resample, shape (resamples,); and at each of the budgets asked for, L_opt from the law with a floor
    (`losses`) and from the plain power law (`plain_losses`), shape (resamples, budgets), each plus the noise of the
    one run that will check it."""

    exponents: np.ndarray
    losses: np.ndarray
    plain_losses: np.ndarray
    floors: np.ndarray


def bootstrap(runs: Sequence[SweepRun], budgets: Sequence[float], resamples: int = 1000, seed: int = 0) -> Bootstrap:
    """How far the fits move when the runs' noise is drawn again (a residual bootstrap; Hoffmann et al. quote
    bootstrap intervals too). Each resample adds to every fitted parabola residuals drawn with replacement from all
    the profiles' residuals (`generator.choice`, budget by budget), then refits the parabolas, the N_opt law and both
    L_opt laws. The residuals are scaled by sqrt(n / (n − 3·budgets)): a parabola fitted to its own points passes
    closer to them than to the truth, by the three numbers it fitted; ValueError when no profile has more sizes than
    that. After the resamples, one more residual per resample and budget is drawn and added to both laws' L_opt: a
    run that checks a prediction has noise of its own, so its interval is a prediction interval."""
    minima, grouped = isoflop_minima(runs), list(profiles(runs).values())
    sizes = [[run.parameters for run in profile] for profile in grouped]
    fitted = [minimum.parabola(np.asarray(n, dtype=float)) for minimum, n in zip(minima, sizes)]
    measured = [np.array([run.val_loss for run in profile]) for profile in grouped]
    residuals = np.concatenate([loss - curve for loss, curve in zip(measured, fitted)])
    if len(residuals) <= 3 * len(minima):
        raise InputError("a bootstrap needs profiles of more than three sizes: a parabola passes through three")
    residuals *= math.sqrt(len(residuals) / (len(residuals) - 3 * len(minima)))
    swept = [minimum.budget for minimum in minima]
    generator = np.random.default_rng(seed)
    exponents, floored, plain, floors = [], [], [], []
    for _ in range(resamples):
        drawn = [isoflop_minimum(c, n, curve + generator.choice(residuals, len(curve)))
                 for c, n, curve in zip(swept, sizes, fitted)]
        exponents.append(fit_power_law(swept, [minimum.n_opt for minimum in drawn]).exponent)
        losses = [minimum.loss_opt for minimum in drawn]
        law = loss_opt_law(swept, losses, floor=True)
        floored.append(law(budgets))
        floors.append(law.floor)
        plain.append(loss_opt_law(swept, losses, floor=False)(budgets))
    noise = generator.choice(residuals, (resamples, len(budgets)))
    return Bootstrap(np.array(exponents), np.array(floored) + noise, np.array(plain) + noise, np.array(floors))
