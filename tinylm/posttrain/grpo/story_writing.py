"""The story task as GRPO's: write a story that meets an instruction, rewarded by the story verifier.

A problem is one of the story task's instructions (tinylm.posttrain.stories): rollouts draw the train split's,
evaluations score the validation split's (they choose best.pt) and the report the test split's. Its prompt is the
instruction as the user's turn after the default system prompt, in the chat template, exactly as SFT trained on it;
a completion ends at <|im_end|> (or another token that ends a turn: `ChatTemplate.stop_tokens`), never draws
<|pad|> or <unk>, and counts as ended only when it stopped so. The reward "correct" is 1 when the reply ended and the
verifier passes it, else 0; "constraints" pays the weaker verifier without its fluency guard
(`Verifier(fluency=False)`: every constraint holds, whatever the text around them), the loophole of notebook 11.
`Score.correct` is the real verifier's verdict whatever the reward, so a hacked reward's damage shows. The policy
starts from an SFT stories run (`python -m tinylm.sft --task stories`); the verifier's fluency guard is the story
base that run names in its sft_eval.json (else runs/stories-base-<profile>).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from ...data.instruct import to_messages
from ...data.story_instructions import StoryInstruction
from ...paths import shown
from ...tokenizers.chat_template import ChatFormatError, ChatTemplate
from ...train.checkpoint import load_model
from ..replies import SHOWN_REPLIES, text_vocab_limit
from ..stories import StoryTask, load_story_task, story_verifier, verifier_base
from ..verifier import Verdict, Verifier, pass_rate
from .tasks import HeldOut, Score, TaskError


class StoryProblem(StoryInstruction):
    """A story instruction as a GRPO problem: its `prompt` is the instruction's text (what keeps a training draw off
    the held-out instructions)."""

    @property
    def prompt(self) -> str:
        return self.instruction

    @classmethod
    def of(cls, instruction: StoryInstruction) -> "StoryProblem":
        return cls(instruction.instruction, instruction.constraints, instruction.story)


def story_messages(problem: StoryInstruction) -> list[dict]:
    """The conversation a reply is generated after: the system prompt and the instruction, as SFT rendered them."""
    return to_messages(problem.record())[:-1]


class StoryWritingTask:
    """Stories that meet instructions, scored by `verifier` (the real one: constraints, ending and fluency)."""

    name = "stories"
    rewards = ("correct", "constraints")

    def __init__(self, verifier: Verifier, stories: StoryTask, reward: str = "correct"):
        if reward not in self.rewards:
            raise TaskError(f"reward {reward!r}: {self.name} pays {' or '.join(self.rewards)}")
        self.verifier, self.stories, self.reward = verifier, stories, reward
        self.weak = Verifier(verifier.model, verifier.tokenizer, fluency=False)
        self.train = [StoryProblem.of(i) for i in stories.train]

    def sample(self, rng: random.Random) -> StoryProblem:
        return rng.choice(self.train)

    def held_out(self, validation: int, test: int) -> HeldOut:
        """The first `validation` and `test` instructions of those splits (all of them when the counts are larger)."""
        return HeldOut([StoryProblem.of(i) for i in self.stories.validation[:validation]],
                       [StoryProblem.of(i) for i in self.stories.test[:test]])

    def rewarded_by(self, reward: str) -> "StoryWritingTask":
        return self if reward == self.reward else StoryWritingTask(self.verifier, self.stories, reward)

    def prompt_ids(self, tokenizer, problem: StoryInstruction) -> list[int]:
        return chat_template(tokenizer).render_prompt(story_messages(problem))

    def generation(self, tokenizer) -> dict:
        template = chat_template(tokenizer)
        return {"stop_tokens": template.stop_tokens, "vocab_limit": text_vocab_limit(tokenizer),
                "excluded_tokens": template.not_text}

    def replies(self, tokenizer, completions: list[list[int]]) -> tuple[list[str], list[bool]]:
        """Each completion's reply text (without its stop token) and whether a stop token ended it."""
        stops = set(chat_template(tokenizer).stop_tokens)
        ended = [bool(ids) and ids[-1] in stops for ids in completions]
        return [tokenizer.decode(ids[:-1] if stop else ids) for ids, stop in zip(completions, ended)], ended

    def judged(self, tokenizer, problems: list[StoryInstruction],
               completions: list[list[int]]) -> tuple[list[str], list[bool], list[Verdict]]:
        """(replies, whether each ended, the verifier's verdicts): a reply that never ended (cut off by the budget
        or the context) does not end as a sentence does, so it does not pass."""
        texts, ended = self.replies(tokenizer, completions)
        verdicts = [v if stop else dataclasses.replace(v, ends=False, passed=False)
                    for v, stop in zip(self.verifier.check(texts, problems), ended)]
        return texts, ended, verdicts

    def score_completions(self, tokenizer, problems: list[StoryInstruction],
                          completions: list[list[int]]) -> list[Score]:
        """correct: the verifier passes the reply; well_formed: it ended; reward: the verdict of `self.reward`."""
        texts, ended, verdicts = self.judged(tokenizer, problems, completions)
        paid = [v.passed for v in (self.weak.check(texts, problems) if self.reward == "constraints" else verdicts)]
        return [Score(reward=float(pay), correct=v.passed, well_formed=stop)
                for pay, stop, v in zip(paid, ended, verdicts)]


def chat_template(tokenizer) -> ChatTemplate:
    try:
        return ChatTemplate(tokenizer)
    except ChatFormatError as error:
        raise TaskError("GRPO on stories starts from a chat model: an SFT stories run (python -m tinylm.sft --task "
                        "stories), given as --base") from error


def check_story_policy_path(base: str, profile: str) -> None:
    """A TaskError for a --base that is no existing SFT run or checkpoint (checked before the run folder is
    claimed, so that a typo creates nothing)."""
    if base == "pretrain" or not Path(base).exists():
        raise TaskError(f"--base {base}: GRPO on stories starts from an SFT stories run, and there is none there; "
                        f"make one (python -m tinylm.sft --task stories --profile {profile}) or give its folder")


def load_story_policy(base: str) -> tuple:
    """(model, tokenizer, description) of the SFT stories run or checkpoint at `base`: a chat model."""
    model, tokenizer, _ = load_model(base)
    chat_template(tokenizer)
    return model, tokenizer, f"SFT model {shown(base)}"


def story_writing_task(base: str | Path, profile: str, device=None) -> StoryWritingTask:
    """The story task scored by the verifier of the SFT run at `base`, its base model on `device`."""
    verifier = story_verifier(verifier_base(base, profile), load_story_task())
    if device is not None:
        verifier.model.to(device)
    return StoryWritingTask(verifier, load_story_task())


def story_report(task: StoryWritingTask, tokenizer, problems: list[StoryInstruction],
                 completions: list[list[int]]) -> dict:
    """`pass_rate` of the verdicts (the shape SFT and DPO report) and the first SHOWN_REPLIES replies."""
    texts, _, verdicts = task.judged(tokenizer, problems, completions)
    shown_replies = [{"instruction": p.instruction, "reply": t, "passed": v.passed}
                     for p, t, v in zip(problems, texts, verdicts)][:SHOWN_REPLIES]
    return {**pass_rate(verdicts), "replies": shown_replies}
