"""`python -m tinylm.sft --task stories` (the smoke profile's default; offline): the report's pass rates in
pass_rate()'s shape and as the verifier gives them again, best.pt chosen by the validation pass rate, the default
run folders, resume, and a chat with the result. The instruction task's runs are tests/test_cli_sft.py's."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO, run_cli
from tinylm.errors import InputError
from tinylm.posttrain.sft import trainer as sft_trainer
from tinylm.posttrain.sft.report import plain_story_replies
from tinylm.posttrain.sft.run import SFTJob, SFTOptions, sft
from tinylm.posttrain.sft.trainer import story_replies
from tinylm.posttrain.stories import load_story_task, story_base_folder, story_verifier
from tinylm.posttrain.verifier import pass_rate
from tinylm.tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ChatTemplate
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

PASS_RATE_KEYS = {"pass_rate", "low", "high", "passed", "instructions", "kinds", "ends", "fluent"}
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


def test_the_report_gives_the_verifiers_pass_rates_of_the_base_and_of_best_pt(story_run):
    root, out, result = story_run
    report = json.loads((out / "sft_eval.json").read_text())
    settings = json.loads((out / "settings.json").read_text())
    assert report["task"] == settings["options"]["task"] == "stories"
    test = load_story_task().test[:HELD_OUT]
    verifier = story_verifier(report["verifier"]["base"])
    assert report["verifier"]["max_loss"] == pytest.approx(verifier.max_loss)
    model, tokenizer, _ = load_model(out / "best.pt")
    base, base_tokenizer, _ = load_model(report["verifier"]["base"])
    replies = {"after": story_replies(model, ChatTemplate(tokenizer), test, DEFAULT_SYSTEM_PROMPT),
               "baseline": plain_story_replies(base, base_tokenizer, test, "cpu")}
    for when in ("baseline", "after"):
        measured = report["pass_rate"][when]
        assert set(measured) == PASS_RATE_KEYS and measured["instructions"] == len(test) == HELD_OUT
        assert measured["low"] <= measured["pass_rate"] <= measured["high"]
        assert measured["kinds"]["name"]["asked"] == sum(any(c.kind == "name" for c in i.constraints) for i in test)
        assert measured == pass_rate(verifier.check(replies[when], test))  # the verifier, asked again, agrees
        assert report[when]["passed_each"] == [v.passed for v in verifier.check(replies[when], test)]
        assert [shown["reply"] for shown in report[when]["shown"]] == replies[when][:3]
    assert report["after"]["answer_loss"] < report["before"]["answer_loss"]
    first = min((r for r in records(out / "metrics.jsonl") if r["event"] == "eval"), key=lambda r: r["step"])
    assert report["before"]["validation_answer_loss"] > first["val_loss"]  # measured before the first step
    assert report["before"]["train_answer_loss"] > first["train_answer_loss"]
    lines = result.stdout.splitlines()
    closing = next(line for line in lines if line.startswith("test pass rate"))
    assert f"{100 * report['pass_rate']['after']['pass_rate']:.1f}% " in closing and "for the base asked" in closing
    assert any(line.startswith(("SFT (passes) to", "SFT (fails) to")) for line in lines)
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
    monkeypatch.setattr(sft_trainer, "pass_rate", lambda verdicts: {"pass_rate": next(planted)})
    report = sft(RunOptions(profile="smoke", out=tmp_path / "sft", max_steps=30), SFTOptions(task="stories"),
                 say=quiet, on_record=quiet)
    evals = [r for r in records(tmp_path / "sft" / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert [r["pass_rate"] for r in evals] == [0.2, 0.6, 0.4]
    assert min(evals, key=lambda r: r["val_loss"])["step"] != 20  # the answer loss would have chosen another
    assert report["after"]["step"] == 20 == load_checkpoint(tmp_path / "sft" / "best.pt")["step"]
    assert report["after"]["validation_pass_rate"] == 0.6


def test_the_task_names_the_default_run_folder_and_base():
    for profile, task, base in (("smoke", "stories", "pretrain"), ("cpu", "stories", "pretrain"),
                                ("gpu", "instruct", "gpt2"), ("gpu", "stories", "pretrain")):
        job = SFTJob(RunOptions(profile=profile), SFTOptions(task=None if task == "instruct" else task), quiet)
        job.settle({})
        assert job.run.out.name == f"sft-{task}-{profile}" and (job.options.task, job.options.base) == (task, base)
    with pytest.raises(InputError, match="^--data is for --task instruct"):
        SFTOptions(task="stories", data="instruct")


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
    assert after["pass_rate"]["baseline"] == before["pass_rate"]["baseline"] and after["steps"] == 26
    assert after["verifier"] == before["verifier"] and records(copy / "metrics.jsonl")[-1]["step"] == 26


def test_chat_answers_a_typed_instruction_with_the_fine_tuned_model(story_run):
    _, out, _ = story_run
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "tinylm.chat", "--ckpt", str(out), "--temperature", "0",
                             "--max-new-tokens", "24"], cwd=REPO, env=env, capture_output=True, text=True,
                            input="Write a story about a character named Lily.\n", timeout=120)
    assert result.returncode == 0, result.stderr
    reply = result.stdout.split("bot> ", 1)[1].split("you> ")[0].strip()
    assert result.stdout.count("bot> ") == 1 and reply  # the fine-tuned model wrote a reply


def test_the_story_base_is_shared_by_the_runs_of_a_profile(story_run):
    _, out, result = story_run
    report = json.loads((out / "sft_eval.json").read_text())
    assert os.path.samefile(report["verifier"]["base"], story_base_folder("smoke") / "best.pt")
