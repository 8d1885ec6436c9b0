"""Notebook 13's scaling sweep: the fits recover laws planted in synthetic data, their uncertainties follow the
noise, a budget buys the steps that 6·N·D says, the size family grows, the character data keeps the GPT-2 data's
stories and held-out stories, and a tiny sweep runs from runs to a prediction."""

import math

import numpy as np
import pytest

from tinylm.config import TrainConfig
from tinylm.course.scaling import (
    LADDER,
    NoMinimum,
    SweepRun,
    bootstrap,
    fit_loss_law,
    fit_parabola,
    fit_power_law,
    isoflop_minima,
    isoflop_minimum,
    model_sizes,
    non_embedding_parameters,
    predict,
    run_sweep,
    steps_for_budget,
    t_quantile,
    training_flops,
)
from tinylm.data.corpora import STORY_END, TINYSTORIES_SAMPLE, prepare_tinystories_chars, split_stories
from tinylm.download import fetch
from tinylm.model.gpt import GPT

SIZES = np.round(np.geomspace(5e3, 2e5, 6))  # whole parameters, as a model has


def profile(n_opt: float, loss_opt: float, curvature: float = 0.1, sizes=SIZES) -> np.ndarray:
    return curvature * (np.log(sizes) - math.log(n_opt)) ** 2 + loss_opt


def synthetic_runs(a: float, noise: float = 0.0, budgets=(1e11, 2e11, 4e11, 8e11), seed: int = 0) -> list[SweepRun]:
    """Profiles whose minima follow N_opt = 0.004·C^a and L_opt = 1.2 + 40·C^-0.2, with Gaussian noise on each loss."""
    generator = np.random.default_rng(seed)
    runs = []
    for budget in budgets:
        losses = profile(0.004 * budget ** a, 1.2 + 40 * budget ** -0.2) + noise * generator.standard_normal(len(SIZES))
        runs += [SweepRun("synthetic", int(n), budget, 0, 0, float(loss), 0.0) for n, loss in zip(SIZES, losses)]
    return runs


def test_the_parabola_fit_recovers_a_known_vertex_and_refuses_a_profile_without_a_minimum():
    parabola = fit_parabola(SIZES, profile(2e4, 1.5, curvature=0.08))
    assert parabola.n_opt == pytest.approx(2e4, rel=1e-9)
    assert parabola.loss_opt == pytest.approx(1.5, abs=1e-12) and parabola.curvature == pytest.approx(0.08)
    assert parabola(np.array([2e4]))[0] == pytest.approx(1.5)
    with pytest.raises(NoMinimum):
        fit_parabola(SIZES, -profile(2e4, 1.5))  # a maximum
    with pytest.raises(ValueError, match="three"):
        fit_parabola(SIZES[:2], [1.0, 2.0])


def test_a_minimum_beyond_the_sizes_is_a_bound_at_the_best_size_not_an_extrapolated_vertex():
    inside = isoflop_minimum(1e12, SIZES, profile(3e4, 1.4))
    assert inside.bracketed and inside.n_opt == pytest.approx(3e4) and inside.tokens_opt == pytest.approx(1e12 / 18e4)
    beyond = isoflop_minimum(1e12, SIZES, profile(1e3, 1.4))  # every size is too large: the smallest is best
    assert not beyond.bracketed and beyond.n_opt == SIZES[0] and beyond.loss_opt == profile(1e3, 1.4)[0]
    assert isoflop_minimum(1e12, SIZES, np.linspace(2, 1, len(SIZES))).n_opt == SIZES[-1]  # no curve at all


def test_the_power_law_fit_recovers_a_known_exponent_and_its_uncertainty_follows_the_noise():
    budgets = np.geomspace(1e11, 1e13, 5)
    exact = fit_power_law(budgets, 3e-3 * budgets ** 0.6)
    assert exact.exponent == pytest.approx(0.6, abs=1e-12) and exact.coefficient == pytest.approx(3e-3, rel=1e-9)
    assert exact.exponent_se < 1e-12
    wobble = np.random.default_rng(0).standard_normal(len(budgets))
    errors = []
    for noise in (0.1, 0.01):
        fit = fit_power_law(budgets, 3e-3 * budgets ** 0.6 * np.exp(noise * wobble))
        assert abs(fit.exponent - 0.6) < 4 * fit.exponent_se
        errors.append(fit.exponent_se)
    assert errors[1] == pytest.approx(errors[0] / 10, rel=1e-6)  # the same scatter, ten times smaller
    with pytest.raises(ValueError, match="three"):
        fit_power_law(budgets[:2], budgets[:2])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law(budgets[:3], [1.0, 0.0, 2.0])


# Student's t critical values, two-sided 95% (the 0.975 quantile) and one 90% (0.95), by degrees of freedom: the
# NIST/SEMATECH e-Handbook of Statistical Methods, section 1.3.6.7.2 (Critical Values of the Student's t Distribution).
T_TABLE = {(0.975, 1): 12.706, (0.975, 2): 4.303, (0.975, 3): 3.182, (0.975, 5): 2.571, (0.975, 10): 2.228,
           (0.975, 30): 2.042, (0.975, 100): 1.984, (0.95, 1): 6.314, (0.95, 4): 2.132}


def test_the_t_quantile_matches_the_table_and_the_closed_forms():
    for (probability, df), tabulated in T_TABLE.items():
        assert t_quantile(probability, df) == pytest.approx(tabulated, abs=6e-4), (probability, df)
    for probability in (0.5, 0.6, 0.9, 0.975, 0.995):
        assert t_quantile(probability, 1) == pytest.approx(math.tan(math.pi * (probability - 0.5)), rel=1e-9, abs=1e-12)
        two = (2 * probability - 1) / math.sqrt(2 * probability * (1 - probability))  # df = 2 has a closed form too
        assert t_quantile(probability, 2) == pytest.approx(two, rel=1e-7, abs=1e-12)
    assert t_quantile(0.975, 1000) == pytest.approx(1.96, abs=3e-3)  # towards the normal's 1.960
    with pytest.raises(ValueError, match="probability"):
        t_quantile(0.975, 0)
    with pytest.raises(ValueError, match="probability"):
        t_quantile(1.0, 3)


def test_the_exponents_t_interval_covers_the_true_exponent_as_often_as_it_says():
    """With three points (one degree of freedom) a 95% t-interval covers the planted exponent 95% of the time; ±2
    standard errors would cover it far less often (about 70%)."""
    generator = np.random.default_rng(0)
    budgets = np.array([1e11, 2e11, 4e11])
    covered, two_se = 0, 0
    for _ in range(2000):
        fit = fit_power_law(budgets, 1e-3 * budgets ** 0.5 * np.exp(0.05 * generator.standard_normal(3)))
        low, high = fit.exponent_interval(0.95)
        covered += low <= 0.5 <= high
        two_se += abs(fit.exponent - 0.5) <= 2 * fit.exponent_se
    assert 0.93 < covered / 2000 < 0.97 and two_se / 2000 < 0.8
    assert fit.points == 3 and (high - low) / 2 == pytest.approx(t_quantile(0.975, 1) * fit.exponent_se)


def test_the_loss_law_finds_the_floor_and_falls_back_to_a_plain_power_law():
    budgets = np.array([1e11, 2e11, 4e11])
    law = fit_loss_law(budgets, 1.25 + 400 * budgets ** -0.25)
    assert law.floor == pytest.approx(1.25, abs=1e-3) and law.decay == pytest.approx(0.25, abs=0.01)
    assert float(law(8e11)) == pytest.approx(1.25 + 400 * 8e11 ** -0.25, rel=2e-4)
    plain = fit_loss_law(budgets, 90 * budgets ** -0.1)  # no floor: the grid's first floor, 0, fits exactly
    assert plain.floor == 0 and plain.decay == pytest.approx(0.1)


def test_a_budget_buys_the_steps_that_six_n_d_says():
    assert training_flops(1e5, 2e6) == 1.2e12
    tokens_per_step = 8 * 64
    for size in model_sizes(LADDER, vocab_size=87, block_size=64):
        for budget in (1e11, 3.3e11, 8e11):
            steps = steps_for_budget(budget, size.parameters, tokens_per_step)
            spent = training_flops(size.parameters, steps * tokens_per_step)
            assert abs(spent - budget) <= training_flops(size.parameters, tokens_per_step) / 2
    assert steps_for_budget(1.0, 10**6, tokens_per_step) == 1  # at least one step


def test_the_size_family_grows_and_counts_what_is_not_an_embedding():
    sizes = model_sizes(LADDER, vocab_size=87, block_size=64)
    counts = [size.parameters for size in sizes]
    assert counts == sorted(counts) and len(set(counts)) == len(counts)
    assert [size.name for size in sizes] == [f"{depth}x{width}" for depth, width in LADDER]
    assert all(size.config.head_size == 8 for size in sizes)
    model = GPT(sizes[3].config)
    embeddings = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    assert sizes[3].parameters == non_embedding_parameters(sizes[3].config) == model.num_parameters() - embeddings
    with pytest.raises(ValueError, match="head size"):
        model_sizes([(2, 20)], vocab_size=87, block_size=64)


def test_the_bootstrap_is_exact_on_exact_data_and_brackets_the_planted_exponent_on_noisy_data():
    exact = bootstrap(synthetic_runs(0.6), budgets=[1.6e12, 3.2e12], resamples=50)
    assert np.ptp(exact.exponents) < 1e-9 and exact.exponents[0] == pytest.approx(0.6, abs=1e-6)
    assert exact.losses.shape == exact.plain_losses.shape == (50, 2)
    assert exact.floors.shape == (50,) and exact.floors[0] == pytest.approx(1.2, abs=2e-3)  # the planted floor E
    assert exact.losses[0, 0] == pytest.approx(1.2 + 40 * 1.6e12 ** -0.2, abs=2e-3)
    minima = isoflop_minima(synthetic_runs(0.6))
    plain = fit_power_law([m.budget for m in minima], [m.loss_opt for m in minima])
    assert np.allclose(exact.plain_losses, plain([1.6e12, 3.2e12]), rtol=1e-9)  # no noise: every resample the same
    noisy = bootstrap(synthetic_runs(0.6, noise=0.01), budgets=[1.6e12], resamples=300)
    low, high = np.percentile(noisy.exponents, [2.5, 97.5])
    assert low < 0.6 < high and high - low > 0.01
    # a prediction interval: one run's noise (about 0.01 here) widens it beyond the fits' own spread
    assert np.std(noisy.losses - noisy.plain_losses) < np.std(noisy.losses) and np.std(noisy.losses) > 0.008
    with pytest.raises(ValueError, match="more than three"):
        bootstrap([run for run in synthetic_runs(0.6) if run.parameters < 3e4], budgets=[1.6e12])


def test_the_prediction_extrapolates_the_planted_laws_and_charges_for_a_size_off_the_optimum():
    minima = isoflop_minima(synthetic_runs(0.6))
    sizes = model_sizes(LADDER, vocab_size=87, block_size=64)
    prediction = predict(minima, 1.6e12, sizes)
    assert prediction.n_opt == pytest.approx(0.004 * 1.6e12 ** 0.6, rel=1e-6)
    assert prediction.loss_opt == pytest.approx(1.2 + 40 * 1.6e12 ** -0.2, abs=2e-3)
    assert prediction.size == min(sizes, key=lambda size: abs(math.log(size.parameters / prediction.n_opt)))
    off = math.log(prediction.size.parameters / prediction.n_opt)
    assert prediction.loss == pytest.approx(prediction.loss_opt + 0.1 * off ** 2)
    assert prediction.off_optimum == pytest.approx(0.1 * off ** 2)
    plain = predict(minima, 1.6e12, sizes, floor=False)  # a plain power law through L_opt: no floor, so lower here
    law = fit_power_law([m.budget for m in minima], [m.loss_opt for m in minima])
    assert plain.loss_opt == pytest.approx(float(law(1.6e12)), rel=1e-12) and plain.loss_opt < prediction.loss_opt
    assert (plain.size, plain.n_opt) == (prediction.size, prediction.n_opt)


def test_the_character_data_keeps_the_samples_stories_and_held_out_stories(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path))
    data = prepare_tinystories_chars(source="sample")
    assert data.folder == tmp_path / "tinystories_sample_chars"
    stories = split_stories(fetch(TINYSTORIES_SAMPLE, tmp_path / "sample.txt").read_text(encoding="utf-8"))
    n_val = int(len(stories) * 0.05)  # prepare_tinystories's split of the sample
    assert data.tokenizer.decode(data.val) == "".join(story + STORY_END for story in stories[-n_val:])
    train_text = data.tokenizer.decode(data.train)
    assert train_text == "".join(story + STORY_END for story in stories[:-n_val])
    assert (data.meta["train_stories"], data.meta["val_stories"]) == (len(stories) - n_val, n_val)
    assert data.tokenizer.vocab_size < 100
    assert prepare_tinystories_chars(source="sample").meta == data.meta  # prepared once, then read


def test_the_character_data_of_hugging_face_covers_every_character_of_both_splits(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")

    class Stream:
        def __init__(self, split):
            self.split = split

        def take(self, n):
            return [{"text": f" Story {i} of {self.split}.\n"} for i in range(n)]

        def __iter__(self):
            return iter([{"text": "Zoë's held-out story."}])  # ë is in no training story

    monkeypatch.setattr(datasets, "load_dataset", lambda name, split=None, streaming=False: Stream(split))
    data = prepare_tinystories_chars(tmp_path / "chars", source="hf", max_train_stories=3)
    assert data.tokenizer.decode(data.train) == "".join(f"Story {i} of train.{STORY_END}" for i in range(3))
    assert data.tokenizer.decode(data.val) == f"Zoë's held-out story.{STORY_END}"


def test_a_tiny_sweep_runs_from_runs_to_a_prediction(tokens):
    train, val = tokens
    sizes = model_sizes([(1, 8), (1, 16), (2, 16), (2, 24)], vocab_size=37, block_size=16)
    template = TrainConfig(batch_size=4, learning_rate=1e-2, min_lr=1e-3, warmup_steps=5, dtype="float32")
    budgets = [6e6, 1.2e7, 2.4e7]
    runs = run_sweep(sizes, budgets, template, train, val, device="cpu", show_progress=False)
    assert [(run.budget, run.size) for run in runs] == [(b, size.name) for b in budgets for size in sizes]
    for run in runs:
        assert run.tokens == run.steps * 4 * 16 and math.isfinite(run.val_loss)
        assert abs(training_flops(run.parameters, run.tokens) - run.budget) <= training_flops(run.parameters, 64) / 2
    again = run_sweep(sizes[:1], budgets[:1], template, train, val, device="cpu", show_progress=False)
    assert again[0].val_loss == pytest.approx(runs[0].val_loss, abs=1e-6)  # seeded: the same run twice
    minima = isoflop_minima(runs)
    prediction = predict(minima, 2 * budgets[-1], sizes)
    assert prediction.size in sizes and math.isfinite(prediction.loss)
    assert len(bootstrap(runs, [2 * budgets[-1]], resamples=20).exponents) == 20
