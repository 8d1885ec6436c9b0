"""What the tool-use tasks (multistep, gsm8k) share: word problems whose worked solutions call a calculator in
GSM8K's format (`48/2 = <<48/2=24>>24`) and end `#### N`, answered in ChatML by a chat model, checked by exact match
of the final number (tinylm.eval.scoring.extract_answer, GSM8K's rule), with the calculator at sampling time
(tinylm.generate.calculator).

The calculator's tokens are no training target: SFT and GRPO leave them out of the loss (`Calculator.loss_mask`). A
task with `annotations = False` is the control that trains on the same solutions with the calls removed, so the model
must compute in its head; `calculator = False` samples without the tool (a model trained with it must then write the
results itself)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import ClassVar, Sequence

from ...config import TrainConfig
from ...eval.scoring import FINAL_ANSWER, extract_answer, normalise_number
from ...generate.calculator import CLOSE, ERROR, OPEN, Calculator, with_results
from ...tokenizers.chat_template import RenderedChat
from ..chat_task import ChatTask
from ..recipes import GRPO_TRAIN, GRPORecipe, SFTRecipe
from ..task import Score

BASE = "smollm2-135m-instruct"  # the published chat model SFT starts from (tinylm.interop.gguf_import)
SMOKE_REPLY_TOKENS = 16
CALL = re.compile(rf"{OPEN}([^<>=]*)=([^<>]*){CLOSE}")


@dataclass(frozen=True)
class WordProblem:
    prompt: str  # the question: the user's turn
    solution: str  # a worked solution with calculator calls, its last line "#### N"
    answer: str  # N, normalised (tinylm.eval.scoring.normalise_number)

    def record(self) -> dict:
        return {"instruction": self.prompt, "output": self.solution}


def without_calls(text: str) -> str:
    """A solution as a model without the tool must write it: `48/2 = <<48/2=24>>24` -> `48/2 = 24`."""
    return CALL.sub("", text)


class ToolTask(ChatTask):
    """A subclass gives `name`, `recipes`, `train_problems` and `held_out`."""

    reply_tokens = 256
    rewards = ("correct",)
    annotations: ClassVar[bool] = True  # the training solutions keep their calls
    calculator: ClassVar[bool] = True  # the calculator runs at sampling time

    def __init__(self, profile: str, data: str | None = None, system_prompt: str | None = None):
        super().__init__(profile, data, system_prompt)
        if profile == "smoke":  # CI's runs check the pipeline, not the replies: shorter ones cost less
            self.reply_tokens = SMOKE_REPLY_TOKENS

    def word_problem(self, prompt: str, solution: str) -> WordProblem:
        """A problem with its solution as this task trains on it: each call's result as the calculator writes it, or
        (annotations = False) no calls."""
        solution = with_results(solution) if self.annotations else without_calls(solution)
        return WordProblem(prompt, solution, final_answer(solution))

    def generation(self, tokenizer) -> dict:
        tool = {"tool": Calculator(tokenizer)} if self.calculator else {}
        return {**super().generation(tokenizer), **tool}

    def answers(self, tokenizer, problems: Sequence, block_size: int) -> list[RenderedChat]:
        """The reference solutions, the calculator's tokens left out of the loss as SFT leaves them out."""
        calculator = Calculator(tokenizer)
        return [RenderedChat(r.ids, calculator.loss_mask(r.ids, r.is_answer))
                for r in super().answers(tokenizer, problems, block_size)]

    def example_command(self, out: str) -> str:
        return (f"python -m tinylm.chat --ckpt {out} --calculator --temperature 0   (ask: "
                f"'{self.held_out(0, 1).test[0].prompt}')")

    def score_replies(self, problems: Sequence[WordProblem], texts: list[str], ended: list[bool]) -> list[Score]:
        """correct: the reply's final number is the answer; kinds: it ended, it wrote `#### N`; figures: its calls
        and how many of them the calculator refused."""
        scores = []
        for problem, text, stop in zip(problems, texts, ended):
            correct = extract_answer(text) == problem.answer
            results = [result for _, result in CALL.findall(text)]
            final_line = FINAL_ANSWER.search(text) is not None
            scores.append(Score(reward=float(correct), correct=correct, well_formed=stop and final_line,
                                kinds={"ended": stop, "final_line": final_line},
                                figures={"calls": len(results), "refused_calls": results.count(ERROR)}))
        return scores


def final_answer(solution: str) -> str:
    """N of a solution's `#### N`, normalised."""
    return normalise_number(solution.rsplit("####", 1)[1].strip())


def tool_recipes(task: str) -> dict:
    """The SFT and GRPO recipes of a tool-use task: SFT from SmolLM2-135M-Instruct, GRPO from the SFT run of `task`
    (runs/sft-<task>-<profile>). The cpu recipes are notebook 15's: 40 LoRA steps (`--lora-rank 16`), then 3
    rollouts of 4 problems x 4 replies, each followed by 2 updates of every weight at 1e-5 (chosen over 5e-5 on
    multistep_3_digit's validation: docs/notes/2026-11-29-rl-with-room.md). The gpu recipes are not measured."""
    smoke = TrainConfig(batch_size=2, max_steps=2, warmup_steps=0, learning_rate=1e-5, min_lr=1e-5,
                        eval_interval=0, log_interval=1, eval_batch_size=8, dtype="float32")
    cpu = TrainConfig(batch_size=8, max_steps=40, warmup_steps=10, learning_rate=5e-5, min_lr=5e-6,
                      weight_decay=0.0, eval_interval=40, log_interval=10, eval_batch_size=32, dtype="float32")
    gpu = dataclasses.replace(cpu, batch_size=32, max_steps=200, eval_interval=50, eval_batch_size=128, dtype="auto")
    grpo = dataclasses.replace(GRPO_TRAIN, learning_rate=1e-5, min_lr=1e-5, eval_batch_size=32)
    return {
        "sft": {"smoke": SFTRecipe(base=BASE, lora_learning_rate=1e-3, held_out=4, train=smoke),
                "cpu": SFTRecipe(base=BASE, lora_learning_rate=1e-3, held_out=48, train=cpu),
                "gpu": SFTRecipe(base=BASE, lora_learning_rate=1e-3, held_out=300, train=gpu)},
        "grpo": {"smoke": GRPORecipe(base=f"sft-{task}", prompts=2, group_size=2, updates=1, validation=4, test=4,
                                     pass_at_samples=2, pass_at_problems=2,
                                     train=dataclasses.replace(grpo, max_steps=2, eval_interval=0, log_interval=1)),
                 "cpu": GRPORecipe(base=f"sft-{task}", prompts=4, group_size=4, updates=2, validation=16, test=32,
                                   pass_at_samples=4, pass_at_problems=16,
                                   train=dataclasses.replace(grpo, max_steps=6, eval_interval=6, log_interval=2)),
                 "gpu": GRPORecipe(base=f"sft-{task}", prompts=16, group_size=8, updates=2, validation=100, test=300,
                                   pass_at_samples=16, pass_at_problems=100,
                                   train=dataclasses.replace(grpo, max_steps=100, eval_interval=20, log_interval=2,
                                                             eval_batch_size=128, dtype="auto"))},
    }
