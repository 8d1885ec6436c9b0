"""Loss plots from trainer records, and the live plot's terminal fallback."""

import matplotlib

matplotlib.use("Agg")

from tinylm.plotting import LiveLossPlot, plot_losses  # noqa: E402

RECORDS = [
    {"event": "train", "step": 1, "loss": 4.0, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed": 1.0},
    {"event": "train", "step": 2, "loss": 3.0, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed": 2.0},
    {"event": "eval", "step": 2, "val_loss": 3.5, "best_val_loss": 3.5},
    {"event": "sample", "step": 2, "text": "hi"},
    {"event": "train", "step": 3, "loss": 2.5, "lr": 1e-3, "tokens_per_s": 1e4, "elapsed": 3.0},
    {"event": "final", "step": 3, "val_loss": 3.1, "best_val_loss": 3.1},
]


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
