"""`python -m tinylm.grpo`: a smoke run end to end in a temporary folder (best.pt chosen on the validation problems, the
reported figures measured on the test problems), and bad input as one line and an exit status."""

import json

import pytest

from tests.helpers import REPO, run_cli
from tinylm.cli import post_training
from tinylm.errors import InputError
from tinylm.posttrain.grpo.run import grpo as grpo_run
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.task import greedy_pass_rate
from tinylm.posttrain.tasks.arithmetic import Arithmetic
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

FIXTURE = REPO / "tests" / "fixtures" / "shakespeare-char-smoke-37d14ad.pt"  # a character model without digits


def test_a_smoke_run_end_to_end_then_a_second_run_in_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "grpo"
    done = run_cli("tinylm.grpo", "--task", "arithmetic", "--base", "pretrain", "--profile", "smoke", "--out", out,
                   data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "grpo_eval.json").read_text())
    assert report["steps"] == 6
    for when in ("before", "after"):
        assert report[when]["low"] <= report[when]["pass_rate"] <= report[when]["high"]
        assert report[when]["problems"] == 32 and set(report[when]["kinds"]) == {"well_formed"}
    assert {"best.pt", "last.pt", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert "test accuracy" in done.stdout and "next: python -m tinylm.sample --ckpt" in done.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["event"] == "eval" and records[0]["step"] == 0  # the starting model, measured first
    evaluations = [r for r in records if r["event"] in ("eval", "final")]
    best = max(evaluations, key=lambda r: r["pass_rate"])  # the choice is the validation split's
    assert report["after"]["validation_pass_rate"] == best["pass_rate"] and report["after"]["step"] == best["step"]
    assert report["validation"]["before"] == records[0]["pass_rate"]
    # the reported figures: best.pt and the starting model on the test problems, which no evaluation scored
    task = Arithmetic("smoke")
    recipe = task.recipe("grpo", "smoke")
    held_out = task.held_out(recipe.validation, recipe.test)
    assert not {p.prompt for p in held_out.validation} & {p.prompt for p in held_out.test}
    start = json.loads((out / "settings.json").read_text())["base"]["path"]
    assert start.endswith("arithmetic-base-smoke/best.pt")  # the task-format model, made first in its own folder
    for when, checkpoint in (("after", out / "best.pt"), ("before", start)):
        model, tokenizer, _ = load_model(checkpoint)
        assert greedy_pass_rate(model, tokenizer, task, held_out.test)["pass_rate"] == report[when]["pass_rate"]
    train = next(record for record in records if record["event"] == "train")
    assert {"reward", "correct", "well_formed", "length", "clip_fraction", "kl"} <= set(train)
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(out)])
    assert "already holds a run" in str(stopped.value.code) and "\n" not in str(stopped.value.code)


@pytest.mark.parametrize("argv, message", [
    (["--set", "group_size=1"], "a group needs at least 2"),
    (["--set", "reward=mentions"], "arithmetic pays correct or format"),
    (["--base", "no/such/run"], "no run or checkpoint there"),
    (["--base", str(FIXTURE)], "cannot write arithmetic problems"),
    (["--set", "grad_accum_steps=4"], "GRPO has no batch size of its own"),  # a rollout is the batch
    (["--set", "sample_interval=10"], "GRPO writes no samples"),
    (["--set", "base=runs/x"], "--set base: it has an option of its own, --base"),
])
def test_bad_input_is_one_line_and_exit_status_1(tmp_path, argv, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(out), *argv])
    text = str(stopped.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
    assert not (out / "last.pt").exists()


def test_an_unknown_task_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--task", "sudoku"])
    assert stopped.value.code == 2 and "invalid choice: 'sudoku'" in capsys.readouterr().err


def test_a_group_too_big_for_memory_is_one_line_before_anything_trains(tmp_path, monkeypatch):
    """On main before this layout, --group-size 100000000 trained the task-format model, then ended in a MemoryError
    traceback."""
    out = tmp_path / "run"
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(out), "--set", "group_size=100000000"])
    text = str(stopped.value.code)
    assert text.startswith("error: one training step needs about ") and "--set group_size=" in text
    assert "\n" not in text and not (tmp_path / "runs" / "arithmetic-base-smoke").exists(), "nothing trained first"


@pytest.mark.parametrize("option, value", [("--learning-rate", "inf"), ("--max-seconds", "nan")])
def test_a_number_that_is_no_number_is_a_usage_error(tmp_path, capsys, option, value):
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(tmp_path / "run"), option, value])
    assert stopped.value.code == 2 and f"argument {option}: must be a positive number" in capsys.readouterr().err


@pytest.mark.parametrize("value, message", [("nan", "kl_coef takes a number"), ("-1", "kl_coef be a number >= 0")])
def test_a_set_number_that_is_no_number_is_one_line(tmp_path, value, message):
    """On main before this layout, --kl-coef nan trained, and exited 0."""
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(tmp_path / "run"), "--set", f"kl_coef={value}"])
    assert message in str(stopped.value.code) and "\n" not in str(stopped.value.code)


def test_an_overwrite_killed_after_measuring_its_start_keeps_the_old_run(tmp_path):
    """The step-0 evaluation saves best.pt but no last.pt, so a kill -9 right after it leaves the old run to come back
    (found by review: it used to write last.pt, which retired the old run before the new one had trained)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.helpers import REPO

    out = tmp_path / "grpo"
    first = run_cli("tinylm.grpo", "--profile", "smoke", "--out", out, data_dir=tmp_path / "data")
    assert first.returncode == 0, first.stderr[-2000:]
    original = {name: (out / name).read_bytes() for name in ("best.pt", "last.pt", "metrics.jsonl", "grpo_eval.json")}
    env = {**os.environ, "TINYLM_DATA_DIR": str(tmp_path / "data"), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "tinylm.grpo", "--profile", "smoke", "--out", str(out),
                                "--overwrite", "--max-steps", "100000"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith(" eval step 0"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait()
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(out)])
    assert "already holds a run" in str(stopped.value.code)
    assert {name: (out / name).read_bytes() for name in original} == original


def quiet(_):
    pass


def test_resume_refuses_a_changed_group_or_seed_and_applies_a_new_rate_and_dtype(tmp_path, monkeypatch):
    """The one resume rule, which GRPO once broke (it dropped --seed and --dtype and ignored a conflicting
    --group-size): a fixed option given with another value is one error naming both; the step limit, learning rate
    and dtype may change and are applied; the options not given keep the saved run's (its group size here)."""
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    out = tmp_path / "grpo"
    grpo_run(RunOptions(profile="smoke", out=out, max_steps=2, set={"group_size": 2}), say=quiet, on_record=quiet)
    kept = (out / "last.pt").read_bytes()
    for run, options, message in (
            (RunOptions(out=out, resume=True, set={"group_size": "3"}), PostTrainingOptions(),
             "^--set group_size=3: the run in .* was started with --set group_size=2; resume it without --set group"),
            (RunOptions(out=out, resume=True, seed=5), PostTrainingOptions(), "^--seed 5: .* with --seed 0"),
            (RunOptions(out=out, resume=True), PostTrainingOptions(task="countdown"),
             "^--task countdown: .* arithmetic")):
        with pytest.raises(InputError, match=message):
            grpo_run(run, options, say=quiet, on_record=quiet)
        assert (out / "last.pt").read_bytes() == kept
    run = RunOptions(out=out, resume=True, max_steps=4, learning_rate=1e-3, dtype="bfloat16", seed=0)
    report = grpo_run(run, PostTrainingOptions(), say=quiet, on_record=quiet)
    saved = load_checkpoint(out / "last.pt")
    assert report["steps"] == saved["step"] == 4
    assert json.loads((out / "settings.json").read_text())["recipe"]["group_size"] == 2
    assert (saved["train_config"]["learning_rate"], saved["train_config"]["min_lr"]) == (1e-3, 1e-3)  # constant
    assert saved["train_config"]["dtype"] == "bfloat16"
