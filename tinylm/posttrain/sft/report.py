"""What an SFT run reports: the measurements before and after training, and the summary that closes the run.

instruct: `chat_measure` (answer loss of the test conversations, greedy replies scored against the references) and
`plain_measure`, the same for the base asked in plain text (tinylm.posttrain.plain); `instruct_epilogue`.
stories: `story_pass_rate` (the verifier's pass rate of greedy replies to the test instructions, a few of them
shown) and `plain_story_replies`, the base asked in plain text (tinylm.posttrain.stories.plain_prompt), its reply
ending at <|endoftext|>; `story_epilogue`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ...config import TrainConfig
from ...data.story_instructions import StoryInstruction
from ...distributed import World, all_reduce_sum
from ...eval.loss import answer_loss_sum
from ...generate.decode import generate_batch
from ...paths import shown
from ...runtime import autocast, resolve_dtype
from ..plain import plain_replies, render_plain
from ..replies import REPLY_TOKENS, SHOWN_REPLIES, chat_replies, scored, text_vocab_limit
from ..stories import SFT_REPORT, STORY_REPLY_TOKENS, plain_prompt
from ..verifier import Verifier, pass_rate
from .trainer import SFTTrainer


def chat_measure(trainer: SFTTrainer, conversations: list, prompts: list[list[dict]], references: list[str],
                 world: World) -> dict:
    """Answer-token loss on `conversations` (the test split); greedy replies to `prompts`, scored."""
    measured = {"answer_loss": trainer.answer_loss(conversations)}  # every rank: the sums are reduced across ranks
    if world.is_main:
        started = time.perf_counter()
        texts, stopped = chat_replies(trainer.model, trainer.template, prompts)
        measured.update(scored(texts, stopped, prompts, references, started))
    return measured


def plain_measure(model, tokenizer, conversations: list[list[dict]], prompts: list[list[dict]],
                  references: list[str], cfg: TrainConfig, device, world: World) -> dict:
    """The base model asked in plain text (tinylm.posttrain.plain), measured as `chat_measure` measures the chat
    model."""
    model = model.to(device)
    total, count = answer_loss_sum(model, [render_plain(tokenizer, c) for c in conversations], cfg.eval_batch_size,
                                   device, tokenizer.eot_token, autocast(device, resolve_dtype(device, cfg.dtype)),
                                   tokenizer, rank=world.rank, world_size=world.size)
    total, count = all_reduce_sum([total, count], device)
    measured = {"answer_loss": total / count}
    if world.is_main:
        started = time.perf_counter()
        texts, stopped = plain_replies(model, tokenizer, prompts, REPLY_TOKENS)
        measured.update(scored(texts, stopped, prompts, references, started))
    return measured


def plain_story_replies(model, tokenizer, instructions: Sequence[StoryInstruction], device,
                        batch_size: int = 32) -> list[str]:
    """The base's greedy continuations of each instruction and a newline, up to <|endoftext|> or
    STORY_REPLY_TOKENS, never <unk>."""
    model = model.to(device)
    replies = []
    for start in range(0, len(instructions), batch_size):
        ids = [tokenizer.encode(plain_prompt(i)) for i in instructions[start : start + batch_size]]
        made = generate_batch(model, ids, STORY_REPLY_TOKENS, stop_tokens=(tokenizer.eot_token,), temperature=0.0,
                              vocab_limit=text_vocab_limit(tokenizer))
        replies += [tokenizer.decode(r).strip() for r in made]
    return replies


def story_pass_rate(replies: list[str], instructions: Sequence[StoryInstruction], verifier: Verifier) -> dict:
    """`pass_rate` of the replies, each reply's pass ("passed_each", in order) and the first SHOWN_REPLIES replies
    with their verdicts ("shown")."""
    verdicts = verifier.check(replies, instructions)
    shown_replies = [{"instruction": i.instruction, "reply": r, "passed": v.passed, "holds": v.holds, "ends": v.ends,
                      "fluent": v.fluent} for i, r, v in zip(instructions[:SHOWN_REPLIES], replies, verdicts)]
    return {"pass_rate": pass_rate(verdicts), "passed_each": [v.passed for v in verdicts], "shown": shown_replies}


def instruct_epilogue(report: dict, out: Path, test: int, validation: int) -> str:
    """What an instruct run measured, where it went, and the next command."""
    before, after, baseline = report["before"], report["after"], report.get("baseline")
    plain = "" if baseline is None else f" (base in plain text: {baseline['answer_loss']:.4f})"
    return (f"answer-token loss on the {test} test conversations (they chose nothing): "
            f"{before['answer_loss']:.4f} before, {after['answer_loss']:.4f} after{plain}; best.pt is step "
            f"{after['step']}, the lowest answer loss on the {validation} validation "
            f"conversations ({after['validation_answer_loss']:.4f})\n"
            f"replies ending with <|im_end|> within {REPLY_TOKENS} tokens: {100 * before['stop_rate']:.1f}% "
            f"before, {100 * after['stop_rate']:.1f}% after ({after['prompts']} test prompts, greedy)"
            + ("" if baseline is None else f"; the base in plain text ends {100 * baseline['stop_rate']:.1f}% "
               "at a blank line or <|endoftext|>") + "\n"
            f"ROUGE-L against the reference answers: {after['rouge_l']:.3f} after"
            + ("" if baseline is None else f", {baseline['rouge_l']:.3f} for the base in plain text") + "\n"
            f"wall time {report['wall_seconds']:.0f} s; report in {shown(out / SFT_REPORT)}\n"
            f"next: python -m tinylm.chat --ckpt {shown(out)}   or   "
            f"python -m tinylm.serve --ckpt {shown(out)} --port 8000")


def _rate(measured: dict) -> str:
    return (f"{100 * measured['pass_rate']:.1f}% ({100 * measured['low']:.1f}-{100 * measured['high']:.1f}%, "
            f"{measured['passed']} of {measured['instructions']})")


def _clip(text: str, width: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width] + " ..."


def story_epilogue(report: dict, out: Path) -> str:
    """What a stories run measured (the pass rates, a reply before and after), where it went, and what next."""
    rates, after = report["pass_rate"], report["after"]
    baseline = rates.get("baseline")
    kinds = ", ".join(f"{kind} {100 * held['held']:.0f}%" for kind, held in rates["after"]["kinds"].items())
    lines = [f"test pass rate (greedy replies to {rates['after']['instructions']} test instructions, the verifier; "
             "95% Wilson): "
             + ("" if baseline is None else f"{_rate(baseline)} for the base asked in plain text, ")
             + f"{_rate(rates['after'])} after SFT; constraints held after: {kinds}",
             f"answer loss of the test stories: {report['before']['answer_loss']:.4f} before, "
             f"{after['answer_loss']:.4f} after; best.pt is step {after['step']}, the highest validation pass rate "
             f"({100 * after['validation_pass_rate']:.1f}%)"]
    for name, measured in (("base", report.get("baseline")), ("SFT", after)):
        if measured and measured.get("shown"):
            first = measured["shown"][0]
            lines.append(f"{name} ({'passes' if first['passed'] else 'fails'}) to \"{_clip(first['instruction'], 90)}"
                         f"\": {_clip(first['reply'])}")
    lines += [f"{report['steps']} steps in {report['sft_seconds']:.0f} s of training, wall time "
              f"{report['wall_seconds']:.0f} s; report in {shown(out / SFT_REPORT)}",
              f"next: python -m tinylm.chat --ckpt {shown(out)}   or   "
              f"python -m tinylm.dpo --task stories --base {shown(out)}"]
    return "\n".join(lines)
