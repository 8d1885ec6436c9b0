"""GRPO on the story task: the prompt is SFT's conversation up to the reply, the reward is the verifier's pass of a
reply that ended, the weaker reward pays a planted hack the real one refuses, pass@k is the unbiased estimate,
completions fit the context, and `python -m tinylm.grpo --task stories` reports the pass rates before and after."""

import itertools
import json
import math
import random
import re

import pytest
import torch

from tests.helpers import run_cli
from tests.test_story_task import STORIES, judge  # noqa: F401 (a fixture: a small model that knows these stories)
from tinylm.cli import post_training
from tinylm.config import GPTConfig
from tinylm.data.instruct import build_examples
from tinylm.data.story_instructions import Constraint, StoryInstruction
from tinylm.model.gpt import GPT
from tinylm.posttrain.grpo.rollout import pass_at_k, pass_at_rates, sample_groups, sampled_correct
from tinylm.posttrain.replies import greedy_completions
from tinylm.posttrain.task import Score, measure
from tinylm.posttrain.tasks._generated import GeneratedTask, Problem, task_tokenizer
from tinylm.posttrain.tasks.arithmetic import Arithmetic
from tinylm.posttrain.tasks.stories import Stories, StoryProblem
from tinylm.posttrain.verifier import Verifier
from tinylm.posttrain.vocab import add_chat_tokens
from tinylm.tokenizers.chat_template import ChatTemplate
from tinylm.tokenizers.gpt2 import BPETokenizer
from tinylm.train.checkpoint import load_model, model_checkpoint, save_checkpoint

BEN = StoryInstruction("Write a story about a character named Ben. The story has a kite.",
                       (Constraint("name", "Ben"), Constraint("word", "kite")), STORIES[2])


@pytest.fixture(scope="module")
def chat():
    return ChatTemplate(BPETokenizer("gpt2-chat"))


def story_task(verifier: Verifier, reward: str = "correct") -> Stories:
    task = Stories("smoke")
    task.verifier = verifier
    return task.rewarded_by(reward)


def test_the_prompt_is_the_sft_conversation_up_to_the_reply(chat):
    rendered = build_examples([BEN.record()], chat, block_size=128).rendered[0]
    task = story_task(Verifier(None, None, guards=False))
    prompt = task.prompt_ids(chat.tokenizer, StoryProblem.of(BEN))
    assert rendered.ids[: len(prompt)] == prompt and not any(rendered.is_answer[: len(prompt)])
    answer = [i for i, is_answer in zip(rendered.ids, rendered.is_answer) if is_answer]
    assert rendered.ids[len(prompt) : len(prompt) + len(answer)] == answer == [*chat.tokenizer.encode(BEN.story),
                                                                               chat.im_end]
    assert task.generation(chat.tokenizer)["stop_tokens"] == chat.stop_tokens


def test_the_reward_is_the_verifiers_pass_of_a_reply_that_ended(judge, chat):  # noqa: F811
    model, tokenizer = judge
    verifier = Verifier(model, tokenizer)
    verifier.calibrate(STORIES, STORIES)
    task = story_task(verifier)
    replies = [STORIES[2], STORIES[2].replace("Ben", "Tom"), STORIES[2], "Ben kite."]
    ended = [True, True, False, True]  # the third never closed its turn
    completions = [chat.tokenizer.encode(text) + [chat.im_end] * stop for text, stop in zip(replies, ended)]
    scores = task.score_completions(chat.tokenizer, [BEN] * 4, completions)
    verdicts = verifier.check(replies, [BEN] * 4)
    assert [v.passed for v in verdicts] == [True, False, True, False]
    assert [s.reward for s in scores] == [1.0, 0.0, 0.0, 0.0]  # the verdict, and only for a reply that ended
    assert [s.correct for s in scores] == [True, False, False, False]
    assert [s.well_formed for s in scores] == [True, True, False, True]


def test_the_mentions_reward_pays_a_loop_of_the_asked_words_that_the_verifier_refuses(judge, chat):  # noqa: F811
    """The loophole of notebook 11: a quarter per mention of the asked name and word (plural too), capped at four,
    whatever the text around them; the verdict (Score.correct) stays the real verifier's."""
    model, tokenizer = judge
    verifier = Verifier(model, tokenizer)
    verifier.calibrate(STORIES, STORIES)
    replies = [STORIES[2], "Ben had a kite. Mom was sad. The sun set.", "Ben kite. Kites Ben. Ben kite. Ben kite kite.",
               "The dog ran. The cat sat. The sun set."]
    completions = [chat.tokenizer.encode(text) + [chat.im_end] for text in replies]
    paid = story_task(verifier, "mentions").score_completions(chat.tokenizer, [BEN] * 4, completions)
    real = story_task(verifier).score_completions(chat.tokenizer, [BEN] * 4, completions)
    counted = [sum(len(re.findall(pattern, text)) for pattern in (r"\bBen\b", r"(?i)\bkites?\b")) for text in replies]
    assert counted == [5, 2, 9, 0]
    assert [s.reward for s in paid] == [1.0, 0.5, 1.0, 0.0]  # min(count, 4) / 4
    assert [s.correct for s in paid] == [s.correct for s in real] and real[0].correct and not real[2].correct
    assert [s.reward for s in real] == [float(s.correct) for s in real]
    with pytest.raises(Exception, match="stories pays correct or mentions"):
        story_task(verifier).rewarded_by("format")


def brute_force_pass_at(n: int, c: int, k: int) -> float:
    """The share of the k-subsets of n completions (the first c correct) that hold a correct one."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in subset) for subset in subsets) / len(subsets)


def test_pass_at_k_is_the_share_of_k_subsets_with_a_correct_completion():
    for n in range(1, 9):
        for c, k in itertools.product(range(n + 1), range(1, n + 1)):
            assert pass_at_k(n, c, k) == pytest.approx(brute_force_pass_at(n, c, k), abs=1e-12), (n, c, k)
    assert pass_at_k(200, 3, 1) == pytest.approx(3 / 200)
    assert pass_at_k(200, 3, 100) == pytest.approx(1 - math.comb(197, 100) / math.comb(200, 100))
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)


class EvenFirstDigit(GeneratedTask):
    """A check a random policy passes about half the time: the completion starts with an even digit."""

    name, reply_tokens = "even", 4
    settings = {"smoke": {}}

    def configure(self) -> None:
        pass

    def sample(self, rng: random.Random) -> Problem:
        return Problem(prompt=f"{rng.randrange(100)}+{rng.randrange(100)}=", answer="")

    def score(self, problem: Problem, completion: str, format_weight: float = 0.1) -> Score:
        correct = completion[:1] in tuple("02468")
        return Score(reward=float(correct), correct=correct, well_formed=True)


def test_sampled_pass_at_is_the_greedy_accuracy_at_temperature_0_and_grows_with_k():
    torch.manual_seed(0)
    tokenizer, task = task_tokenizer(), EvenFirstDigit("smoke")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    problems = [task.sample(random.Random(i)) for i in range(24)]
    greedy = [task.score(p, tokenizer.decode(ids)).correct
              for p, ids in zip(problems, greedy_completions(model, tokenizer, task, problems))]
    at = pass_at_rates(sampled_correct(model, tokenizer, task, problems, 4, batch_size=8, temperature=0), 4, (1, 4))
    assert at[1] == at[4] == sum(greedy) / len(problems)
    correct = sampled_correct(model, tokenizer, task, problems, 4, batch_size=8, temperature=1.0)
    sampled = pass_at_rates(correct, 4, (1, 2, 4))
    assert 0 < sampled[1] < sampled[2] < sampled[4] <= 1


def test_a_completion_is_cut_where_it_would_outgrow_the_context():
    torch.manual_seed(0)
    tokenizer, task = task_tokenizer(), Arithmetic("smoke")
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    problems = [Problem("1234567+1234567=", "2469134"), Problem("1+1=", "2")]  # 16 and 4 characters
    rollout = sample_groups(model, tokenizer, task, problems, group_size=3, seed=0)  # up to 8 new tokens
    assert rollout.sequences.shape[1] <= model.config.block_size + 1
    lengths = rollout.completion_mask.sum(dim=1).tolist()
    assert max(lengths[:3]) <= 1 and all(1 <= n <= 8 for n in lengths[3:])
    with torch.no_grad():
        model(rollout.sequences[:, :-1])  # the policy scores a whole rollout in one pass


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    """A stand-in for an SFT stories run: a 1-layer GPT-2-vocabulary model as the story base and, with the chat
    tokens added, as the SFT model, in the run folder shape GRPO reads (best.pt, settings.json)."""
    folder = tmp_path_factory.mktemp("sft-stories")
    torch.manual_seed(0)
    tokenizer = BPETokenizer("gpt2")
    base = GPT(GPTConfig(vocab_size=50304, block_size=128, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(folder / "base.pt", model_checkpoint(base, tokenizer))
    model, chat_tokenizer = add_chat_tokens(base, tokenizer)
    save_checkpoint(folder / "best.pt", model_checkpoint(model, chat_tokenizer))
    (folder / "settings.json").write_text(json.dumps({"task": {"verifier": str(folder / "base.pt")}}))
    return folder


def test_a_story_run_reports_the_pass_rates_before_and_after(tmp_path, sft_run):
    out = tmp_path / "grpo"
    done = run_cli("tinylm.grpo", "--task", "stories", "--base", sft_run / "best.pt", "--profile", "smoke", "--out",
                   out, data_dir=tmp_path / "data")
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((out / "grpo_eval.json").read_text())
    assert report["task"] == "stories" and report["steps"] == 4
    at = report["pass_at"]
    assert set(at["after"]) == {"1", "4", "correct"} and at["samples"] == 4 and at["problems"] == 8
    for when in ("before", "after"):  # each problem's correct samples, which the rates summarise
        correct = at[when]["correct"]
        assert len(correct) == 8 and all(0 <= c <= 4 for c in correct)
        assert at[when]["1"] == pytest.approx(sum(correct) / 32)
        assert at[when]["4"] == pytest.approx(sum(c > 0 for c in correct) / 8)
    task = Stories("smoke")
    task.prepare(sft_run / "best.pt", "cpu", "grpo")  # the verifier of the story base the start names
    test = task.held_out(8, 8).test
    for when, checkpoint in (("before", sft_run / "best.pt"), ("after", out / "best.pt")):
        measured = report[when]
        assert {"pass_rate", "low", "high", "passed", "problems", "kinds", "answer_loss"} <= set(measured)
        assert measured["problems"] == 8
        model, tokenizer, _ = load_model(checkpoint)  # the figures are the task's measure of greedy test replies
        again = measure(model, tokenizer, task, test, batch_size=64)
        assert again["kinds"] == measured["kinds"] and again["pass_rate"] == measured["pass_rate"]
    assert "test pass rate (the verifier)" in done.stdout and "python -m tinylm.chat --ckpt" in done.stdout


@pytest.mark.parametrize("argv, message", [
    (["--task", "stories", "--base", "pretrain"], "the stories task makes no base of its own for GRPO"),
    (["--task", "stories", "--base", "no/such/run"], "python -m tinylm.sft --task stories --profile smoke"),
    (["--task", "arithmetic", "--set", "reward=mentions"], "arithmetic pays correct or format"),
])
def test_a_story_run_without_its_start_or_with_a_reward_the_task_lacks_is_one_line(tmp_path, argv, message):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--out", str(out), *argv])
    text = str(stopped.value.code)
    assert text.startswith("error: ") and message in text and "\n" not in text
    assert not out.exists()


def test_a_story_run_from_a_model_without_chat_tokens_is_one_line(tmp_path, sft_run):
    with pytest.raises(SystemExit) as stopped:
        post_training.cli("grpo", ["--profile", "smoke", "--task", "stories", "--base", str(sft_run / "base.pt"),
                                   "--out", str(tmp_path / "run")])
    text = str(stopped.value.code)
    assert text.startswith("error: ") and "has no chat tokens: start from a chat model" in text and "\n" not in text
