"""One run's metrics.jsonl holds one history: a fresh run starts a new file, and a run resumed after a crash drops
the records the crashed run wrote after its checkpoint's step, so that no step appears twice."""

import json

import pytest

from tinylm.train.trainer import Trainer


def records(folder):
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


class Crash(Exception):
    """What kill -9 does to a run, as far as its files are concerned: it stops between two records."""


def test_a_fresh_run_starts_a_new_metrics_file(tmp_path, make_model, train_config, tokens):
    train, val = tokens
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.jsonl").write_text(json.dumps({"event": "train", "step": 500, "loss": 9.0}) + "\n")
    Trainer(make_model(), train_config(max_steps=3, warmup_steps=1), train, val, out_dir=out, device="cpu").fit()
    steps = [(record["event"], record["step"]) for record in records(out)]
    assert steps == [("plan", 1), ("train", 1), ("train", 2), ("train", 3), ("final", 3)]


def test_a_resumed_run_drops_the_records_after_its_checkpoint_and_repeats_no_step(tmp_path, make_model, train_config,
                                                                                  tokens):
    train, val = tokens
    out = tmp_path / "run"
    cfg = train_config(max_steps=8, warmup_steps=1, eval_interval=4)

    def crash_at_step_6(record):
        if record["event"] == "train" and record["step"] == 6:
            raise Crash

    crashed = Trainer(make_model(), cfg, train, val, out_dir=out, device="cpu", callbacks=[crash_at_step_6])
    with pytest.raises(Crash):
        crashed.fit()  # last.pt is step 4's; steps 5 and 6 were logged, and will be trained again
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"event": "train", "st')  # a record cut short as the process died
    resumed = Trainer(make_model(), cfg, train, val, out_dir=out, device="cpu")
    resumed.resume(out)
    assert [record["step"] for record in records(out)][-2:] == [4, 4], "up to the checkpoint: step 4's train and eval"
    resumed.fit()
    history = records(out)
    assert [record["step"] for record in history if record["event"] == "train"] == list(range(1, 9))
    assert [(record["event"], record["step"]) for record in history if record["event"] != "train"] == [
        ("plan", 1), ("eval", 4), ("plan", 5), ("final", 8)]
