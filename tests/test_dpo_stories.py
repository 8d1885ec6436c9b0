"""DPO on the story task: on-policy pairs the verifier ranks, a run's pass-rate report, and resuming on the same pairs.

The model is tests/chat_fixtures.py's tiny chat model, whose random replies end a sentence now and then; the
instructions ask for at most two sentences, and the verifier checks constraints only (Verifier(fluency=False)), so
that some replies pass and some fail: a smoke story model passes none, and would give no pair whose chosen reply
passes. The run tests swap the story task and its verifier for these (the real ones are tests/test_story_task.py's).
"""

from __future__ import annotations

import json
import shutil

import pytest
from tinylm.posttrain.dpo.on_policy import on_policy_pairs, rank, sample_replies
from tinylm.posttrain.stories import StoryTask, story_prompts

from tests.chat_fixtures import save_tiny_chat_checkpoint, tiny_chat_model
from tinylm.cli.dpo import cli
from tinylm.data.story_instructions import Constraint, StoryInstruction
from tinylm.errors import InputError
from tinylm.posttrain.dpo import run
from tinylm.posttrain.dpo.run import DPOJob, DPOOptions, dpo
from tinylm.posttrain.verifier import Verifier
from tinylm.tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ChatTemplate
from tinylm.train.checkpoint import load_checkpoint
from tinylm.train.options import RunOptions

AT_MOST_TWO = Constraint("sentences", 2)


def instructions(count: int, start: int = 0) -> list[StoryInstruction]:
    return [StoryInstruction(f"Write story {n}. {AT_MOST_TWO.phrase()}", (AT_MOST_TWO,), "Hello! Red is a color.")
            for n in range(start, start + count)]


def quiet(_):
    pass


def test_pairs_are_the_models_own_replies_ranked_by_the_verifier():
    model, tokenizer = tiny_chat_model(block_size=128)
    template, verifier, asked = ChatTemplate(tokenizer), Verifier(None, None, fluency=False), instructions(16)
    made = on_policy_pairs(model, template, verifier, asked, samples=4, seed=3, system_prompt=DEFAULT_SYSTEM_PROMPT,
                           block_size=128, desc="test")
    sampled = sample_replies(model, template, story_prompts(asked, DEFAULT_SYSTEM_PROMPT), samples=4, seed=3)
    assert sampled != sample_replies(model, template, story_prompts(asked, DEFAULT_SYSTEM_PROMPT), samples=4, seed=4)
    replies = {i.instruction: r for i, r in zip(asked, sampled)}  # the same seed samples the same replies
    assert made.counts["pairs"] == len(made.records) >= 4 and made.counts["chosen_passed"] >= 1
    for record in made.records:
        own = replies[record["instruction"]]
        assert record["chosen"] in own and record["rejected"] in own  # on-policy: the model's own replies
        instruction = next(i for i in asked if i.instruction == record["instruction"])
        chosen, rejected = verifier.check([record["chosen"], record["rejected"]], [instruction] * 2)
        any_passed = any(v.passed for v in verifier.check(own, [instruction] * len(own)))
        assert not rejected.passed and rank(chosen) > rank(rejected) and chosen.passed == any_passed


@pytest.fixture(scope="module")
def story_run(tmp_path_factory):
    """A smoke stories run of 6 steps on the tiny chat model, the task and verifier swapped (module docstring)."""
    root = tmp_path_factory.mktemp("dpo-stories")
    save_tiny_chat_checkpoint(root / "chat" / "best.pt", block_size=128)
    with pytest.MonkeyPatch.context() as patch:
        swap_task(patch)
        report = dpo(RunOptions(profile="smoke", out=root / "dpo"), DPOOptions(task="stories", base=root / "chat"),
                     say=quiet, on_record=quiet)
    return root, report


def swap_task(patch: pytest.MonkeyPatch) -> None:
    task = StoryTask(train=instructions(16), validation=instructions(8, 100), test=instructions(8, 200), names=(),
                     stories={})
    patch.setattr(run, "load_story_task", lambda: task)
    patch.setattr(run, "story_verifier", lambda base: Verifier(None, None, fluency=False))
    patch.setattr(run, "verifier_base", lambda base, profile: base)  # the swapped verifier needs no story base


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_stories_run_reports_the_pass_rate_before_and_after(story_run):
    root, report = story_run
    out = root / "dpo"
    assert report == json.loads((out / "dpo_eval.json").read_text())
    for when in ("before", "after"):
        measured = report["pass_rate"][when]
        assert measured["instructions"] == 8 and measured["kinds"]["sentences"]["asked"] == 8
        assert measured["low"] <= measured["pass_rate"] <= measured["high"]
        assert report[when]["story_loss"] > 0 and report[when]["stories"] == 8
    evals = [r for r in records(out / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert all({"pass_rate", "val_loss", "preference_accuracy"} <= set(r) for r in evals)
    best = max(evals, key=lambda r: r["pass_rate"])  # the first of the best: a later tie does not replace it
    assert report["after"]["step"] == best["step"] and report["after"]["validation_pass_rate"] == best["pass_rate"]
    saved = json.loads((out / "pairs.json").read_text())
    assert report["pairs"]["train"] == saved["train"]["counts"] and saved["seed"] == 1337
    assert len(load_checkpoint(out / "last.pt")["dpo"]["reference"]) == len(saved["train"]["records"])


def test_a_resumed_run_trains_on_the_saved_pairs_and_keeps_the_task(story_run, tmp_path, monkeypatch):
    root, report = story_run
    copy = tmp_path / "dpo"
    shutil.copytree(root / "dpo", copy)
    swap_task(monkeypatch)
    with pytest.raises(InputError, match=r"^--task preference: the run in .* was started with --task stories"):
        dpo(RunOptions(profile="smoke", out=copy, resume=True), DPOOptions(task="preference"), say=quiet,
            on_record=quiet)

    def no_sampling(*args, **kwargs):
        raise AssertionError("a resumed run samples no new pairs")

    monkeypatch.setattr(run, "on_policy_pairs", no_sampling)
    pairs = (copy / "pairs.json").read_text()
    resumed = dpo(RunOptions(profile="smoke", out=copy, resume=True, max_steps=8), say=quiet, on_record=quiet)
    assert resumed["pass_rate"]["before"] == report["pass_rate"]["before"] and resumed["steps"] == 8
    assert (copy / "pairs.json").read_text() == pairs
    (copy / "pairs.json").unlink()
    with pytest.raises(InputError, match="pairs.json cannot be read .* --overwrite"):
        dpo(RunOptions(profile="smoke", out=copy, resume=True, max_steps=10), say=quiet, on_record=quiet)


def test_the_task_names_the_default_run_folder_and_base():
    for profile, task in (("smoke", "stories"), ("cpu", "stories"), ("gpu", "preference")):
        job = DPOJob(RunOptions(profile=profile), DPOOptions(), quiet)
        job.settle({})
        assert job.run.out.name == f"dpo-{task}-{profile}" and job.options.task == task
        assert job.options.base.endswith(f"sft-{'stories' if task == 'stories' else 'instruct'}-{profile}")


def test_another_run_trains_on_the_pairs_of_one_from_the_same_base(story_run, tmp_path, monkeypatch):
    """--data names a stories run: its pairs, not new ones (arms that differ in one setting share their data), and
    only from the same base (pairs sampled from another model are not on-policy): an error, with nothing written."""
    root, report = story_run
    swap_task(monkeypatch)

    def no_sampling(*args, **kwargs):
        raise AssertionError("a run given --data samples no pairs")

    monkeypatch.setattr(run, "on_policy_pairs", no_sampling)
    again = dpo(RunOptions(profile="smoke", out=tmp_path / "again", max_steps=3, learning_rate=1e-4),
                DPOOptions(task="stories", base=root / "chat", data=str(root / "dpo")), say=quiet, on_record=quiet)
    assert again["pairs"] == report["pairs"]
    assert (tmp_path / "again" / "pairs.json").read_text() == (root / "dpo" / "pairs.json").read_text()
    save_tiny_chat_checkpoint(tmp_path / "other" / "best.pt", block_size=128)
    with pytest.raises(SystemExit) as stopped:
        cli(["--task", "stories", "--profile", "smoke", "--base", str(tmp_path / "other"), "--data",
             str(root / "dpo" / "pairs.json"), "--out", str(tmp_path / "other-dpo")])
    assert "its pairs were sampled from" in stopped.value.code and "\n" not in stopped.value.code
    assert not (tmp_path / "other-dpo").exists()


def test_sampling_shows_its_progress_with_a_total(capsys):
    model, tokenizer = tiny_chat_model(block_size=128)
    sample_replies(model, ChatTemplate(tokenizer), story_prompts(instructions(3), DEFAULT_SYSTEM_PROMPT), samples=2,
                   seed=0, batch_size=4, desc="replies")
    shown = capsys.readouterr().err
    assert "replies:" in shown and "0/6" in shown and "6/6" in shown and "<" in shown  # a total, an ETA
