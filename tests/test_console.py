"""Terminal lines for each kind of trainer record."""

from tinylm.console import format_record


def test_train_record_line_shows_step_loss_lr_and_throughput():
    line = format_record({"event": "train", "step": 42, "loss": 1.23456, "lr": 3e-4, "tokens_per_s": 12345.0,
                          "elapsed": 7.2, "skipped_steps": 0})
    assert "42" in line and "1.2346" in line and "3.00e-04" in line and "12.3k tok/s" in line
    assert "skipped" not in line
    with_skips = format_record({"event": "train", "step": 1, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 1.0,
                                "elapsed": 0.0, "skipped_steps": 3})
    assert "3 fp16 steps skipped" in with_skips


def test_eval_and_final_lines_show_val_and_best_loss():
    for event in ("eval", "final"):
        line = format_record({"event": event, "step": 500, "val_loss": 1.5, "best_val_loss": 1.4, "elapsed": 3.0})
        assert event in line and "1.5000" in line and "1.4000" in line


def test_sample_and_interrupted_lines():
    assert "To be" in format_record({"event": "sample", "step": 10, "text": "To be"})
    line = format_record({"event": "interrupted", "step": 7, "checkpoint": "runs/x/last.pt"})
    assert "runs/x/last.pt" in line and "--resume" in line
    assert format_record({"event": "other", "x": 1}) == str({"event": "other", "x": 1})


def test_a_mixture_of_experts_train_line_shows_its_worst_layers_max_violation():
    record = {"event": "train", "step": 10, "loss": 2.0, "lr": 1e-3, "tokens_per_s": 1000.0, "elapsed": 1.0,
              "skipped_steps": 0, "expert_load": [[0.5, 0.5], [0.9, 0.1]], "max_violation": [0.0, 0.8]}
    assert format_record(record).endswith("| expert max-violation 0.80")
    dense = {k: v for k, v in record.items() if k not in ("expert_load", "max_violation")}
    assert "max-violation" not in format_record(dense)
