"""DPO on the story task: on-policy pairs the verifier ranks, a run's pass-rate report, and resuming on the same pairs.

The model is tests/chat_fixtures.py's tiny chat model, whose random replies end a sentence now and then; the
instructions ask for at most two sentences, and the verifier checks constraints only (Verifier(guards=False)), so
that some replies pass and some fail: a smoke story model passes none, and would give no pair whose chosen reply
passes. The run tests swap the story task and its verifier for these (the real ones are tests/test_story_task.py's).
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.chat_fixtures import save_tiny_chat_checkpoint, tiny_chat_model
from tinylm.cli.post_training import cli
from tinylm.data.story_instructions import Constraint, StoryInstruction
from tinylm.errors import InputError
from tinylm.posttrain import tasks
from tinylm.posttrain.chat_task import ChatTask
from tinylm.posttrain.dpo.run import DPO, dpo
from tinylm.posttrain.job import PostTrainingOptions, settle
from tinylm.posttrain.on_policy import on_policy_pairs, passing_chosen, rank, sample_replies
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.tasks.stories import Stories, StoryProblem, StorySplits
from tinylm.posttrain.verifier import Verifier
from tinylm.train.checkpoint import load_checkpoint
from tinylm.train.options import RunOptions

AT_MOST_TWO = Constraint("sentences", 2)


def instructions(count: int, start: int = 0) -> list[StoryInstruction]:
    return [StoryInstruction(f"Write story {n}. {AT_MOST_TWO.phrase()}", (AT_MOST_TWO,), "Hello! Red is a color.")
            for n in range(start, start + count)]


class FewStories(Stories):
    """The story task with the instructions above, judged by the verifier without its guard (module docstring)."""

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None):
        ChatTask.__init__(self, profile, data, system_prompt)
        self.splits = StorySplits(train=instructions(16), validation=instructions(8, 100), test=instructions(8, 200),
                                  names=(), stories={})
        self.reward, self._train = "correct", [StoryProblem.of(i) for i in self.splits.train]
        self.prepare(None, "cpu", "dpo")

    def prepare(self, start_path, device, method: str) -> None:
        self.verifier, self.verifier_at = Verifier(None, None, guards=False), start_path


def swap_task(patch: pytest.MonkeyPatch) -> None:
    patch.setitem(tasks._REGISTERED, "stories", FewStories)


def quiet(_):
    pass


def test_pairs_are_the_models_own_replies_ranked_by_the_verifier():
    model, tokenizer = tiny_chat_model(block_size=128)
    task = FewStories("smoke")
    asked = task.train_problems()
    made = on_policy_pairs(model, tokenizer, task, asked, samples=4, seed=3, desc="test")
    sampled = sample_replies(model, tokenizer, task, asked, samples=4, seed=3)
    assert sampled != sample_replies(model, tokenizer, task, asked, samples=4, seed=4)
    replies = {i.instruction: task.reply_texts(tokenizer, r) for i, r in zip(asked, sampled)}  # the seed's replies
    assert made.counts["pairs"] == len(made.records) >= 4 and made.counts["chosen_passed"] >= 1
    for record in made.records:
        own = replies[record["instruction"]]
        assert record["chosen"] in own and record["rejected"] in own  # on-policy: the model's own replies
        instruction = next(i for i in asked if i.instruction == record["instruction"])
        ended = [True] * 2  # a reply drawn for a pair ended (it fits the context with its <|im_end|>)
        chosen, rejected = task.score_replies([instruction] * 2, [record["chosen"], record["rejected"]], ended)
        own_scores = task.score_completions(tokenizer, [instruction] * 4, sampled[asked.index(instruction)])
        assert not rejected.correct and rank(chosen) > rank(rejected)
        assert chosen.correct == any(score.correct for score in own_scores) == record["chosen_passed"]


@pytest.fixture(scope="module")
def story_run(tmp_path_factory):
    """A smoke stories run of 6 steps on the tiny chat model, the task and verifier swapped (module docstring)."""
    root = tmp_path_factory.mktemp("dpo-stories")
    save_tiny_chat_checkpoint(root / "chat" / "best.pt", block_size=128)
    with pytest.MonkeyPatch.context() as patch:
        swap_task(patch)
        report = dpo(RunOptions(profile="smoke", out=root / "dpo"),
                     PostTrainingOptions(task="stories", base=root / "chat"), say=quiet, on_record=quiet)
    return root, report


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_stories_run_reports_the_pass_rate_before_and_after(story_run):
    root, report = story_run
    out = root / "dpo"
    assert report == json.loads((out / "dpo_eval.json").read_text())
    for when in ("before", "after"):
        measured = report[when]
        assert measured["problems"] == 8 and measured["kinds"]["sentences"]["asked"] == 8
        assert measured["low"] <= measured["pass_rate"] <= measured["high"] and measured["answer_loss"] > 0
    evals = [r for r in records(out / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert all({"pass_rate", "val_loss", "preference_accuracy"} <= set(r) for r in evals)
    best = max(evals, key=lambda r: r["pass_rate"])  # the first of the best: a later tie does not replace it
    assert report["after"]["step"] == best["step"] and report["after"]["validation_pass_rate"] == best["pass_rate"]
    saved = json.loads((out / "pairs.json").read_text())
    assert report["sampled"]["train"] == saved["train"]["counts"] and saved["seed"] == 1337
    assert len(load_checkpoint(out / "last.pt")["dpo"]["reference"]) == len(saved["train"]["records"])


def test_a_resumed_run_trains_on_the_saved_pairs_and_keeps_the_task(story_run, tmp_path, monkeypatch):
    root, report = story_run
    copy = tmp_path / "dpo"
    shutil.copytree(root / "dpo", copy)
    swap_task(monkeypatch)
    with pytest.raises(InputError, match=r"^--task preference: the run in .* was started with --task stories"):
        dpo(RunOptions(profile="smoke", out=copy, resume=True), PostTrainingOptions(task="preference"), say=quiet,
            on_record=quiet)

    def no_sampling(*args, **kwargs):
        raise AssertionError("a resumed run samples no new pairs")

    monkeypatch.setattr("tinylm.posttrain.dpo.run.on_policy_pairs", no_sampling)
    pairs = (copy / "pairs.json").read_text()
    resumed = dpo(RunOptions(profile="smoke", out=copy, resume=True, max_steps=8), say=quiet, on_record=quiet)
    assert resumed["before"] == report["before"] and resumed["steps"] == 8
    assert (copy / "pairs.json").read_text() == pairs
    (copy / "pairs.json").unlink()
    with pytest.raises(InputError, match="pairs.json cannot be read .* --overwrite"):
        dpo(RunOptions(profile="smoke", out=copy, resume=True, max_steps=10), say=quiet, on_record=quiet)


def test_the_task_names_the_default_run_folder_and_base(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    for profile, task in (("smoke", None), ("cpu", None), ("gpu", None), ("gpu", "preference")):
        settled = settle(DPO, RunOptions(profile=profile), PostTrainingOptions(task=task), say=quiet)
        named = task or "stories"  # the same default task on every profile
        assert settled.run.out.name == f"dpo-{named}-{profile}" and settled.options.task == named
        assert settled.options.base.endswith(f"sft-{'stories' if named == 'stories' else 'instruct'}-{profile}")


def test_another_run_trains_on_the_pairs_of_one_from_the_same_base(story_run, tmp_path, monkeypatch):
    """--data names a stories run: its pairs, not new ones (arms that differ in one setting share their data), and
    only from the same base (pairs sampled from another model are not on-policy): an error, with nothing written."""
    root, report = story_run
    swap_task(monkeypatch)

    def no_sampling(*args, **kwargs):
        raise AssertionError("a run given --data samples no pairs")

    monkeypatch.setattr("tinylm.posttrain.dpo.run.on_policy_pairs", no_sampling)
    again = dpo(RunOptions(profile="smoke", out=tmp_path / "again", max_steps=3, learning_rate=1e-4),
                PostTrainingOptions(task="stories", base=root / "chat", data=str(root / "dpo")), say=quiet,
                on_record=quiet)
    assert again["pairs"] == report["pairs"] and again["sampled"] == report["sampled"]
    assert (tmp_path / "again" / "pairs.json").read_text() == (root / "dpo" / "pairs.json").read_text()
    save_tiny_chat_checkpoint(tmp_path / "other" / "best.pt", block_size=128)
    with pytest.raises(SystemExit) as stopped:
        cli("dpo", ["--task", "stories", "--profile", "smoke", "--base", str(tmp_path / "other"), "--data",
             str(root / "dpo" / "pairs.json"), "--out", str(tmp_path / "other-dpo")])
    assert "its pairs were sampled from" in stopped.value.code and "\n" not in stopped.value.code
    assert not (tmp_path / "other-dpo").exists()


def test_sampling_shows_its_progress_with_a_total(capsys):
    model, tokenizer = tiny_chat_model(block_size=128)
    sample_replies(model, tokenizer, FewStories("smoke"), FewStories("smoke").train_problems()[:3], samples=2,
                   seed=0, desc="replies")
    shown = capsys.readouterr().err
    assert "replies:" in shown and "0/6" in shown and "6/6" in shown and "<" in shown  # a total, an ETA


def test_sft_on_chosen_replies_trains_on_the_passing_chosen_replies_of_a_dpo_run(story_run, tmp_path, monkeypatch):
    """sft --data DPO_RUN (rejection-sampling fine-tuning, DPO's control): the start's passing chosen replies are
    its training conversations, none of the rest; the verifier is the one the start names; a chat model is not
    asked in plain text; replies sampled from another model are refused, with nothing written."""
    root, _ = story_run
    swap_task(monkeypatch)
    saved = json.loads((root / "dpo" / "pairs.json").read_text())["train"]["records"]
    passing = [r for r in saved if r["chosen_passed"]]
    assert 0 < len(passing) < len(saved)  # both kinds, so that the test can tell them apart
    trained_on = []

    def kept(*args):
        replies = passing_chosen(*args)
        trained_on.extend(replies)
        return replies

    monkeypatch.setattr("tinylm.posttrain.sft.run.passing_chosen", kept)
    report = sft(RunOptions(profile="smoke", out=tmp_path / "rft", max_steps=3),
                 PostTrainingOptions(task="stories", base=root / "chat", data=str(root / "dpo")), say=quiet,
                 on_record=quiet)
    assert trained_on == [{"instruction": r["instruction"], "output": r["chosen"]} for r in passing]
    assert report["train"]["kept"] == len(passing) and "passing chosen replies" in report["data"]
    assert "baseline" not in report and report["steps"] == 3
    save_tiny_chat_checkpoint(tmp_path / "other" / "best.pt", block_size=128)
    with pytest.raises(SystemExit) as stopped:
        cli("sft", ["--task", "stories", "--profile", "smoke", "--base", str(tmp_path / "other"), "--data",
                 str(root / "dpo"), "--out", str(tmp_path / "other-rft")])
    assert "were sampled from" in stopped.value.code and "\n" not in stopped.value.code
    assert not (tmp_path / "other-rft").exists()
