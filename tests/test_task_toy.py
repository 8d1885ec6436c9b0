"""A task added in one file, this one, runs through SFT, DPO and GRPO with no change to the methods: the methods take
a task and never ask which one it is (and no method module names one)."""

from __future__ import annotations

import ast
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tinylm.config import TrainConfig
from tinylm.posttrain.chat_task import ChatTask
from tinylm.posttrain.dpo.run import dpo
from tinylm.posttrain.grpo.run import grpo
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.recipes import GRPO_TRAIN, DPORecipe, GRPORecipe, SFTRecipe
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.task import HeldOut, Score
from tinylm.posttrain.tasks import register, task_names
from tinylm.posttrain.tasks.stories import story_base
from tinylm.train.options import RunOptions

WORDS = ["cat", "dog", "ball", "tree", "sun", "cake", "kite", "bird", "fish", "park", "box", "car", "hat", "bed",
         "toy", "cup", "boat", "rain", "book", "duck", "frog", "cow", "pig", "bus"]
SMOKE = TrainConfig(batch_size=4, max_steps=4, warmup_steps=1, learning_rate=3e-3, min_lr=3e-4, eval_interval=2,
                    log_interval=2, eval_batch_size=16, dtype="float32")


@dataclass(frozen=True)
class Echo:
    word: str

    @property
    def prompt(self) -> str:
        return f"Say the word {self.word}."

    def record(self) -> dict:
        return {"instruction": self.prompt, "output": f"The word is {self.word}."}


@register
class SayTheWord(ChatTask):
    """Reply with the asked word: the story base's vocabulary has it, and replies of a tiny model rank apart."""

    name, reply_tokens = "say-the-word", 12
    recipes = {
        "sft": {"smoke": SFTRecipe(base="pretrain", lora_learning_rate=1e-2, held_out=4, train=SMOKE)},
        "dpo": {"smoke": DPORecipe(base="sft-say-the-word", beta=0.1, lora_learning_rate=1e-2, held_out=4,
                                   instructions=16, samples=8,
                                   train=dataclasses.replace(SMOKE, batch_size=2))},
        "grpo": {"smoke": GRPORecipe(base="sft-say-the-word", prompts=2, group_size=4, updates=1, validation=4, test=4,
                                     train=dataclasses.replace(GRPO_TRAIN, max_steps=2, eval_interval=1,
                                                               log_interval=1))},
    }

    def source(self) -> str:
        return "words to say"

    def train_problems(self) -> list[Echo]:
        return [Echo(word) for word in WORDS[:16]]

    def held_out(self, validation: int | None, test: int | None) -> HeldOut:
        return HeldOut([Echo(word) for word in WORDS[16:20]][:validation], [Echo(word) for word in WORDS[20:]][:test])

    def prerequisite(self, method: str, base: str, profile: str, recipe):
        return story_base(profile) if base == "pretrain" else None  # a small story model knows these words

    def score_replies(self, problems, texts, ended) -> list[Score]:
        scores = []
        for problem, text, stop in zip(problems, texts, ended):
            words = text.lower().split()
            said, short, varied = problem.word in text.lower(), len(words) <= 6, len(set(words)) == len(words)
            scores.append(Score(reward=float(said and stop), correct=said and stop, well_formed=stop,
                                kinds={"said": said, "short": short, "varied": varied, "ended": stop}))
        return scores


def quiet(_):
    pass


def test_a_task_in_one_file_runs_through_sft_dpo_and_grpo(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))
    assert "say-the-word" in task_names()
    options = PostTrainingOptions(task="say-the-word")
    reports = {method: run(RunOptions(profile="smoke"), options, say=quiet, on_record=quiet)
               for method, run in (("sft", sft), ("dpo", dpo), ("grpo", grpo))}
    for method, report in reports.items():
        out = tmp_path / "runs" / f"{method}-say-the-word-smoke"
        settings = json.loads((out / "settings.json").read_text())
        assert report["task"] == settings["options"]["task"] == "say-the-word", method
        for when in ("before", "after"):  # one report shape for every method
            assert report[when]["problems"] == 4, method
            assert set(report[when]["kinds"]) == {"said", "short", "varied", "ended"}, method
            assert report[when]["low"] <= report[when]["pass_rate"] <= report[when]["high"], method
    assert json.loads((tmp_path / "runs" / "dpo-say-the-word-smoke" / "settings.json").read_text())["base"][
        "path"] == str((tmp_path / "runs" / "sft-say-the-word-smoke" / "best.pt").resolve())  # the SFT run it named
    assert reports["dpo"]["pairs"]["train"]["kept"] > 0


POSTTRAIN = Path(__file__).resolve().parents[1] / "tinylm" / "posttrain"
SHARED_CODE = sorted(path for path in POSTTRAIN.rglob("*.py") if "tasks" not in path.relative_to(POSTTRAIN).parts)


def task_branches(source: str) -> list[str]:
    """Where `source` imports a task's module or compares something with a task's name (a word such as
    "preference" may still name a method's own figures, as DPO's preference accuracy, where nothing is compared)."""
    names, found = set(task_names()), []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.startswith("tasks.") or ".tasks." in module or {alias.name for alias in node.names} & names:
                found.append(ast.unparse(node))
        if isinstance(node, ast.Compare):
            compared = [node.left, *node.comparators]
            values = {c.value for c in compared if isinstance(c, ast.Constant)}
            values |= {e.value for c in compared if isinstance(c, (ast.Tuple, ast.List, ast.Set))
                       for e in c.elts if isinstance(e, ast.Constant)}
            if values & names:
                found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("path", SHARED_CODE, ids=lambda path: str(path.relative_to(POSTTRAIN)))
def test_no_method_module_or_shared_one_branches_on_a_task(path):
    """The methods (posttrain/sft, dpo, grpo) and what they share (posttrain/*.py) take a task and never ask which
    one it is; only posttrain/tasks/ names tasks."""
    assert task_branches(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("source", ['if options.task == "stories":\n    pass',
                                    'if name in ("arithmetic", "countdown"):\n    pass',
                                    "from ..tasks.stories import Stories"])
def test_the_branch_check_finds_a_branch(source):
    assert task_branches(source)
