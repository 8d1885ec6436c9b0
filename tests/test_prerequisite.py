"""The runs a run starts from: a base the task makes is reused when finished, resumed when interrupted and trained
when absent, each said in one plan line before the run's folder is taken; a run records its start's weights, so
that --resume refuses a retrained base and takes a moved one with the same weights."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from tinylm.errors import InputError
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.task import TaskError
from tinylm.posttrain.tasks.arithmetic import Arithmetic
from tinylm.train.checkpoint import load_checkpoint, save_checkpoint
from tinylm.train.options import RunOptions
from tinylm.train.run import run_job


def quiet(_):
    pass


def test_a_prerequisite_is_trained_when_absent_resumed_when_interrupted_and_reused_when_finished(tmp_path,
                                                                                                 monkeypatch):
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    base = Arithmetic("smoke").prerequisite("grpo", "pretrain", "smoke", Arithmetic.recipe("grpo", "smoke"))
    assert base.out == tmp_path / "runs" / "arithmetic-base-smoke" and base.steps == 30
    assert base.plan().startswith("task-format model: ") and base.plan().endswith(
        "arithmetic-base-smoke, none yet: trains first (30 steps; its progress shows the time)")
    run_job(base.job(RunOptions(out=base.out, profile="smoke", max_steps=10)), say=quiet)  # stopped at step 10
    assert load_checkpoint(base.out / "last.pt")["step"] == 10, "the run was not stopped where the test stops it"
    assert base.plan().endswith("interrupted at step 10 of 30: resumes first")
    said = []
    assert base.ensure(say=said.append) == base.out / "best.pt"
    assert load_checkpoint(base.out / "last.pt")["step"] == 30 and base.plan().endswith("finished (30 steps)")
    assert any(line.startswith("plan: 30 steps, from step 10") for line in said), said  # resumed, not restarted
    kept = (base.out / "last.pt").stat().st_mtime_ns
    assert base.ensure(say=pytest.fail) == base.out / "best.pt"  # finished: nothing trains, nothing is said
    assert (base.out / "last.pt").stat().st_mtime_ns == kept


@pytest.fixture
def story_run(tmp_path, monkeypatch):
    """A 4-step smoke SFT run of the story task, from the story base it pretrains first."""
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    said = []
    sft(RunOptions(profile="smoke", out=tmp_path / "sft", max_steps=4), PostTrainingOptions(task="stories"),
        say=said.append, on_record=quiet)
    return tmp_path / "sft", said


def test_the_base_is_named_before_the_run_and_its_weights_recorded(story_run):
    out, said = story_run
    assert said[0].startswith("story base: ") and said[0].endswith("none yet: trains first (20 steps; its progress "
                                                                   "shows the time)")
    started = json.loads((out / "settings.json").read_text())["base"]
    assert started["path"].endswith("stories-base-smoke/best.pt") and len(started["digest"]) == 16


def test_resume_refuses_a_retrained_base_and_takes_a_moved_one(story_run, tmp_path):
    out, _ = story_run
    base = tmp_path / "runs" / "stories-base-smoke" / "best.pt"
    moved = tmp_path / "elsewhere" / "best.pt"
    moved.parent.mkdir()
    shutil.copy(base, moved)
    state = load_checkpoint(base)
    with torch.no_grad():
        state["model"]["lm_head.weight"] += 0.01  # as if the base were trained again
    save_checkpoint(base, state)
    kept = (out / "last.pt").read_bytes()
    with pytest.raises(InputError, match="the model this run started from has changed: .* Resume with --base at the "
                                         "model it started from"):
        sft(RunOptions(out=out, resume=True, max_steps=6), say=quiet, on_record=quiet)
    assert (out / "last.pt").read_bytes() == kept
    report = sft(RunOptions(out=out, resume=True, max_steps=6), PostTrainingOptions(base=str(moved)), say=quiet,
                 on_record=quiet)
    assert report["steps"] == 6
    assert json.loads((out / "settings.json").read_text())["base"]["path"] == str(moved.resolve())


def test_a_run_holding_out_more_problems_than_the_task_format_model_never_saw_is_refused():
    """The task-format model is trained on none of the first N held-out problems; a run that holds out more would
    score it on problems it may have trained on."""
    usual = Arithmetic.recipe("grpo", "smoke")
    fewer = dataclasses.replace(usual, validation=usual.validation - 1)
    assert Arithmetic("smoke").prerequisite("grpo", "pretrain", "smoke", fewer) is not None
    more = dataclasses.replace(usual, test=usual.test + 1)
    with pytest.raises(TaskError, match=r"^--set validation=\d+ test=\d+: the task-format model"):
        Arithmetic("smoke").prerequisite("grpo", "pretrain", "smoke", more)
