"""`python -m tinylm.sft --task stories` (the default task; offline): the report's measurements, which the task's one
measurer gives again, best.pt chosen by the validation pass rate, the default run folders, resume, and a chat with
the result. The instruction task's runs are tests/test_cli_sft.py's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO, run_cli
from tinylm.errors import InputError
from tinylm.posttrain import job as post_training_job
from tinylm.posttrain.job import PostTrainingOptions, settle
from tinylm.posttrain.sft.run import SFT, sft
from tinylm.posttrain.task import measure
from tinylm.posttrain.tasks.stories import Stories, story_base
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

REPORT_KEYS = {"pass_rate", "low", "high", "passed", "problems", "kinds", "figures", "passed_each", "replies",
               "answer_loss"}
HELD_OUT = 16  # the smoke recipe's validation and test instructions


@pytest.fixture(scope="module")
def story_run(tmp_path_factory):
    """One smoke run of the default task (the story base pretrained first, or reused), shared by the tests here."""
    root = tmp_path_factory.mktemp("sft-stories")
    out = root / "sft"
    result = run_cli("tinylm.sft", "--profile", "smoke", "--out", out, data_dir=root / "data")
    assert result.returncode == 0, result.stderr
    return root, out, result


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def quiet(_):
    pass


def test_the_report_is_what_the_tasks_one_measurer_gives_for_the_base_and_for_best_pt(story_run):
    root, out, result = story_run
    report = json.loads((out / "sft_eval.json").read_text())
    settings = json.loads((out / "settings.json").read_text())
    assert report["task"] == settings["options"]["task"] == "stories"
    task = Stories("smoke")
    task.prepare(settings["task"]["verifier"], "cpu", "sft")
    assert settings["task"]["max_loss"] == pytest.approx(task.verifier.max_loss)
    test = task.held_out(HELD_OUT, HELD_OUT).test
    model, tokenizer, _ = load_model(out / "best.pt")
    base, base_tokenizer, _ = load_model(settings["base"]["path"])
    again = {"after": measure(model, tokenizer, task, test),
             "baseline": measure(base, base_tokenizer, task.plain(), test)}
    for when in ("baseline", "after"):
        measured = report[when]
        assert REPORT_KEYS <= set(measured) and measured["problems"] == len(test) == HELD_OUT
        assert measured["low"] <= measured["pass_rate"] <= measured["high"]
        assert measured["kinds"]["name"]["asked"] == sum(any(c.kind == "name" for c in i.constraints) for i in test)
        assert {k: measured[k] for k in REPORT_KEYS} == {k: again[when][k] for k in REPORT_KEYS}
    assert report["after"]["answer_loss"] < report["before"]["answer_loss"]
    first = min((r for r in records(out / "metrics.jsonl") if r["event"] == "eval"), key=lambda r: r["step"])
    assert report["before"]["validation_answer_loss"] > first["val_loss"]  # measured before the first step
    assert report["before"]["train_answer_loss"] > first["train_answer_loss"]
    lines = result.stdout.splitlines()
    closing = next(line for line in lines if line.startswith("test pass rate (the verifier)"))
    assert f"{100 * report['after']['pass_rate']:.1f}% " in closing and "the base asked in plain text" in closing
    assert any(line.startswith(("after (passes) to", "after (fails) to")) for line in lines)
    assert f"python -m tinylm.dpo --task stories --base {out}" in result.stdout


def test_best_pt_is_the_evaluation_with_the_highest_validation_pass_rate(story_run):
    _, out, _ = story_run
    report = json.loads((out / "sft_eval.json").read_text())
    evals = [r for r in records(out / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert all({"pass_rate", "val_loss", "train_answer_loss", "chat_epochs"} <= set(r) for r in evals)
    best = max(evals, key=lambda r: r["pass_rate"])  # the first of the best: a later tie does not replace it
    assert report["after"]["step"] == best["step"] == load_checkpoint(out / "best.pt")["step"]
    assert report["after"]["validation_pass_rate"] == best["pass_rate"]


def test_a_pass_rate_that_peaks_early_chooses_best_pt_though_the_loss_keeps_falling(monkeypatch, tmp_path):
    """Planted pass rates 0.2, 0.6, 0.4 at steps 10, 20, 30: best.pt is step 20's weights, not the lowest loss's."""
    planted = iter([0.2, 0.6, 0.4])
    monkeypatch.setattr(post_training_job, "greedy_pass_rate", lambda *args, **kwargs: {"pass_rate": next(planted)})
    report = sft(RunOptions(profile="smoke", out=tmp_path / "sft", max_steps=30), PostTrainingOptions(task="stories"),
                 say=quiet, on_record=quiet)
    evals = [r for r in records(tmp_path / "sft" / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert [r["pass_rate"] for r in evals] == [0.2, 0.6, 0.4]
    assert min(evals, key=lambda r: r["val_loss"])["step"] != 20  # the answer loss would have chosen another
    assert report["after"]["step"] == 20 == load_checkpoint(tmp_path / "sft" / "best.pt")["step"]
    assert report["after"]["validation_pass_rate"] == 0.6


def test_the_task_names_the_default_run_folder_and_base_the_same_on_every_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    for profile, task, base in (("smoke", "stories", "pretrain"), ("cpu", "stories", "pretrain"),
                                ("gpu", "stories", "pretrain"), ("gpu", "instruct", "gpt2")):
        settled = settle(SFT, RunOptions(profile=profile),
                         PostTrainingOptions(task=None if task == "stories" else task), say=quiet)
        assert settled.run.out.name == f"sft-{task}-{profile}"
        assert (settled.options.task, settled.options.base) == (task, base)
    with pytest.raises(InputError, match="^--data: the stories task reads no data set of yours"):
        Stories("smoke", data="instruct")


def test_a_resume_keeps_the_task_and_the_baseline_and_refuses_another_task_in_one_line(story_run, tmp_path):
    root, out, _ = story_run
    copy = tmp_path / "sft"
    shutil.copytree(out, copy)
    before = json.loads((copy / "sft_eval.json").read_text())
    refused = run_cli("tinylm.sft", "--profile", "smoke", "--out", copy, "--resume", "--task", "instruct",
                      data_dir=root / "data")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "error: --task instruct: the run in") and "was started with --task stories" in refused.stderr
    assert json.loads((copy / "sft_eval.json").read_text()) == before  # nothing lost
    resumed = run_cli("tinylm.sft", "--profile", "smoke", "--out", copy, "--resume", "--max-steps", "26",
                      data_dir=root / "data")
    assert resumed.returncode == 0, resumed.stderr
    after = json.loads((copy / "sft_eval.json").read_text())
    assert after["baseline"] == before["baseline"] and after["steps"] == 26
    assert json.loads((copy / "settings.json").read_text())["task"] == json.loads((out / "settings.json").read_text())[
        "task"] and records(copy / "metrics.jsonl")[-1]["step"] == 26


def test_chat_answers_a_typed_instruction_with_the_fine_tuned_model(story_run):
    _, out, _ = story_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tinylm.chat", "--ckpt", str(out), "--temperature", "0",
                             "--max-new-tokens", "24"], cwd=REPO, env=env, capture_output=True, text=True,
                            input="Write a story about a character named Lily.\n", timeout=120)
    assert result.returncode == 0, result.stderr
    reply = result.stdout.split("bot> ", 1)[1].split("you> ")[0].strip()
    assert result.stdout.count("bot> ") == 1 and reply  # the fine-tuned model wrote a reply


def test_the_story_base_is_shared_by_the_runs_of_a_profile_and_named_at_the_start(story_run):
    _, out, result = story_run
    settings = json.loads((out / "settings.json").read_text())
    assert os.path.samefile(settings["task"]["verifier"], story_base("smoke").out / "best.pt")
    assert os.path.samefile(settings["base"]["path"], story_base("smoke").out / "best.pt")
    assert any(line.startswith("story base: ") and line.endswith((": trains first (20 steps; its progress shows the "
                                                                  "time)", "finished (20 steps)"))
               for line in result.stdout.splitlines())
