"""Loss and expert-load plots from trainer records, and the live plot's terminal fallback."""

import matplotlib

matplotlib.use("Agg")

import warnings  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tinylm.course.plotting import (  # noqa: E402
    LiveLossPlot,
    plot_arms,
    plot_balancing,
    plot_effective_choices,
    plot_fine_tuning,
    plot_loss_panels,
    plot_losses,
    plot_per_block,
    plot_token_bars,
    plot_token_times,
    trailing_mean,
)

RECORDS = [
    {"event": "train", "step": 1, "loss": 4.0, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed": 1.0},
    {"event": "train", "step": 2, "loss": 3.0, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed": 2.0},
    {"event": "eval", "step": 2, "val_loss": 3.5, "best_val_loss": 3.5},
    {"event": "sample", "step": 2, "text": "hi"},
    {"event": "train", "step": 3, "loss": 2.5, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed": 3.0},
    {"event": "final", "step": 3, "val_loss": 3.1, "best_val_loss": 3.1},
]


def test_plot_losses_of_records_without_a_loss_draws_an_empty_axes_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns about a legend without labelled lines
        ax = plot_losses([{"event": "plan", "step": 10}])
    assert ax.get_lines() == [] and ax.get_legend() is None


def test_plot_losses_draws_train_and_validation_curves():
    ax = plot_losses(RECORDS, title="run")
    train, val = ax.get_lines()
    assert list(train.get_xdata()) == [1, 2, 3] and list(train.get_ydata()) == [4.0, 3.0, 2.5]
    assert list(val.get_xdata()) == [2, 3] and list(val.get_ydata()) == [3.5, 3.1]
    assert ax.get_title() == "run"


def test_live_plot_prints_lines_outside_a_notebook(capsys):
    plot = LiveLossPlot()
    assert not plot.notebook
    for record in RECORDS:
        plot(record)
    lines = capsys.readouterr().out
    assert "val loss 3.1000" in lines and "hi" in lines
    assert plot.records == RECORDS


MOE_RECORDS = [
    {"event": "train", "step": 10, "loss": 3.0, "expert_load": [[0.7, 0.1, 0.1, 0.1], [0.4, 0.2, 0.2, 0.2]],
     "max_violation": [1.8, 0.6]},
    {"event": "eval", "step": 10, "val_loss": 3.2, "best_val_loss": 3.2},
    {"event": "train", "step": 20, "loss": 2.5, "expert_load": [[0.3, 0.3, 0.2, 0.2], [0.25, 0.25, 0.25, 0.25]],
     "max_violation": [0.2, 0.0]},
]


def test_plot_loss_and_grad_norm_draws_each_curve_from_its_records():
    from tinylm.course.plotting import plot_loss_and_grad_norm
    from tinylm.errors import InputError

    records = [{"event": "eval", "step": 0, "val_loss": 4.2, "train_slice_loss": 4.2},
               {"event": "train", "step": 1, "loss": 4.0, "grad_norm": 3.0, "clipped": 1.0},
               {"event": "train", "step": 2, "loss": 3.0, "grad_norm": 0.5, "clipped": 0.0},
               {"event": "final", "step": 2, "val_loss": 3.5, "train_slice_loss": 3.1}]
    loss_ax, norm_ax = plot_loss_and_grad_norm(records, grad_clip=1.0)
    curves = {line.get_label(): list(line.get_ydata()) for line in loss_ax.get_lines()}
    assert curves == {"train (one batch)": [4.0, 3.0], "train (slice, evaluated)": [4.2, 3.1],
                      "validation (whole split)": [4.2, 3.5]}
    norms = {line.get_label(): list(line.get_ydata()) for line in norm_ax.get_lines()}
    assert norms["gradient norm before clipping"] == [3.0, 0.5] and norms["grad_clip = 1.0"] == [1.0, 1.0]
    share = [ax for ax in norm_ax.figure.axes if ax not in (loss_ax, norm_ax)][0]
    assert list(share.get_lines()[0].get_ydata()) == [100.0, 0.0]
    without_slice = [{k: v for k, v in r.items() if k != "train_slice_loss"} for r in records]
    loss_ax, _ = plot_loss_and_grad_norm(without_slice, grad_clip=1.0)
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train (one batch)", "validation (whole split)"]
    with pytest.raises(InputError, match="no train record"):
        plot_loss_and_grad_norm(records[:1], grad_clip=1.0)


def arm_run(seed, val_loss, records):
    return SimpleNamespace(seed=seed, val_loss=val_loss, records=records)


def test_plot_arms_shows_every_seeds_final_loss_and_curve_in_the_arms_colour():
    train = [{"event": "train", "step": s, "loss": 5.0 - s, "elapsed": 2.0 * s} for s in (1, 2, 3)]
    runs = {"A": [arm_run(0, 3.0, train), arm_run(1, 3.2, train)], "B": [arm_run(0, 2.5, train)]}
    final, curves = plot_arms(runs, title="ablation").axes
    ticks = [line for line in final.get_lines() if line.get_marker() == "|" and line.get_color() == "black"]
    assert [list(t.get_xdata()) for t in ticks] == [[3.0, 3.2], [2.5]]
    assert [t.get_text() for t in final.get_yticklabels()] == ["A", "B"]
    lines = curves.get_lines()
    assert len(lines) == 3 and list(lines[0].get_xdata()) == [2.0, 4.0, 6.0]
    np.testing.assert_allclose(lines[0].get_ydata(), [4.0, 3.5, 3.0])  # the trailing mean of 4, 3, 2
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color()
    assert [t.get_text() for t in curves.get_legend().get_texts()] == ["A", "B"]
    assert trailing_mean([1, 3, 5, 7], 2).tolist() == [1, 2, 4, 6]


def test_plot_arms_shows_the_test_loss_when_asked():
    train = [{"event": "train", "step": s, "loss": 5.0 - s, "elapsed": 2.0 * s} for s in (1, 2, 3)]
    runs = {"A": [SimpleNamespace(seed=0, val_loss=3.0, test_loss=3.4, records=train)]}
    final, _ = plot_arms(runs, split="test").axes
    ticks = [line for line in final.get_lines() if line.get_marker() == "|" and line.get_color() == "black"]
    assert [list(t.get_xdata()) for t in ticks] == [[3.4]]
    assert final.get_xlabel() == "final test loss (nats per token)"


def test_plot_balancing_draws_the_worst_layer_under_the_ceiling_and_each_arms_last_load():
    dense = [{"event": "train", "step": s, "loss": 5.0 - s, "elapsed": 2.0 * s} for s in (1, 2, 3)]
    moe = [dict(r, elapsed=1.0 * r["step"]) for r in MOE_RECORDS]
    runs = {"dense": [arm_run(0, 3.2, dense)], "+MoE, none": [arm_run(0, 3.0, moe)],
            "+MoE, loss-free": [arm_run(0, 3.1, moe[2:])]}
    fig = plot_balancing(runs, top_k=2)
    curves, *heatmaps = fig.axes[:3]
    worst_none, worst_free, ceiling = curves.get_lines()
    assert list(worst_none.get_ydata()) == [1.8, 0.2] and list(worst_free.get_ydata()) == [0.2]
    assert list(ceiling.get_ydata()) == [1, 1]  # 4 experts, top-2: E/k - 1
    (label,) = curves.texts
    assert label.get_position()[1] == 1 and label.get_va() == "bottom", "the ceiling's label sits above the curves"
    np.testing.assert_array_equal(heatmaps[1].get_images()[0].get_array(), MOE_RECORDS[-1]["expert_load"])
    assert heatmaps[0].get_title() == "none: last load"
    assert list(heatmaps[0].get_yticks()) == [0, 1] and list(heatmaps[0].get_xticks()) == [0, 1, 2, 3]
    assert [h.get_ylabel() for h in heatmaps] == ["layer", ""], "one axis label, not one overlapping each panel"
    dense_colour, none_colour, free_colour = (line.get_color() for line in plot_arms(runs).axes[1].get_lines())
    assert (worst_none.get_color(), worst_free.get_color()) == (none_colour, free_colour), "as plot_arms colours them"
    assert dense_colour not in (none_colour, free_colour)
    with pytest.raises(ValueError, match="mixture-of-experts"):
        plot_balancing({"dense": [arm_run(0, 3.0, RECORDS)]}, top_k=2)


def test_plot_fine_tuning_draws_each_seeds_losses_and_marks_the_pass_rate_that_chose_best():
    records = [{"event": "eval", "step": 10, "chat_epochs": 0.5, "val_loss": 2.0, "train_answer_loss": 1.9,
                "pass_rate": 0.25},
               {"event": "train", "step": 15, "loss": 1.5},
               {"event": "final", "step": 20, "chat_epochs": 1.0, "val_loss": 2.1, "train_answer_loss": 1.2,
                "pass_rate": 0.2}]
    report = {"before": {"validation_answer_loss": 3.0, "train_answer_loss": 2.8}, "after": {"step": 10}}
    said = []
    loss_ax, rate_ax = plot_fine_tuning({42: report}, {42: records}, say=said.append)
    validation, training = loss_ax.get_lines()
    assert list(validation.get_xdata()) == [0.0, 0.5, 1.0] and list(validation.get_ydata()) == [3.0, 2.0, 2.1]
    assert list(training.get_ydata()) == [2.8, 1.9, 1.2]
    rates, star = rate_ax.get_lines()
    assert list(rates.get_ydata()) == [25.0, 20.0] and list(star.get_ydata()) == [25.0]  # best.pt's evaluation
    assert "+0.200 nats before the first step, +0.900 at the end" in said[0]
    assert "lowest validation loss 2.000 at step 10" in said[0] and "25.0% at step 10 (best.pt), 20.0%" in said[1]
    loss_ax, rate_ax = plot_fine_tuning({42: report}, {42: records}, pass_rates=False, say=said.append)
    assert not rate_ax.get_lines() and len(said) == 3


def test_plot_token_bars_draws_each_panels_probabilities_and_greys_what_a_sampler_cut():
    probs = [0.5, 0.3, 0.2]
    fig = plot_token_bars({"all": probs, "top-2": probs}, ["a", "b", "c"], kept=[[True] * 3, [True, True, False]])
    everything, top_two = fig.axes
    assert [bar.get_height() for bar in top_two.patches] == pytest.approx(probs)
    assert [tick.get_text() for tick in top_two.get_xticklabels()] == ["a", "b", "c"]
    grey = matplotlib.colors.to_rgba("lightgray")
    assert [bar.get_facecolor() == grey for bar in top_two.patches] == [False, False, True]
    assert not any(bar.get_facecolor() == grey for bar in everything.patches)
    assert top_two.get_title() == "top-2"


def test_plot_effective_choices_bounds_the_curve_by_one_choice_and_the_vocabulary():
    ax = plot_effective_choices([0.1, 1.0, 10.0], [1.2, 8.0, 60.0], vocab_size=65).axes[0]
    curve, uniform, greedy, _ = ax.get_lines()
    assert list(curve.get_ydata()) == [1.2, 8.0, 60.0]
    assert uniform.get_ydata()[0] == 65 and greedy.get_ydata()[0] == 1
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_plot_token_times_draws_milliseconds_with_and_without_the_cache_per_model():
    fig = plot_token_times({"small": {True: [0.001, 0.002], False: [0.003, 0.004]},
                            "wide": {True: [1.0], False: [2.0]}})
    small = fig.axes[0]
    without, with_cache = small.get_lines()
    assert list(without.get_ydata()) == pytest.approx([3.0, 4.0])
    assert list(with_cache.get_ydata()) == pytest.approx([1.0, 2.0])
    assert [ax.get_title() for ax in fig.axes] == ["small, first round", "wide, first round"]


def test_plot_per_block_and_loss_panels_draw_every_series():
    ax = plot_per_block({"residual": [1.0, 2.0], "plain": [1e-9, 1.0]}, "gradient norm").axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["residual", "plain"] and ax.get_yscale() == "log"
    fig = plot_loss_panels({"lr 3e-3": {"with": [4.0, 3.0], "without": [4.0, float("nan")]},
                            "lr 1e-3": {"with": [4.0]}}, reference=(3.3, "unigram"), ylim=(2.5, 6))
    first, second = fig.axes
    assert [line.get_label() for line in first.get_lines()] == ["with", "without", "unigram"]
    assert first.get_ylim() == (2.5, 6) and len(second.get_lines()) == 2

