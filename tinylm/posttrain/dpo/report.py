"""What a DPO run reports: the measurements before and after training, and the summary that closes the run.

`preference_measure`: the preference summary on the test pairs and the greedy replies' token F1 against the chosen
and rejected answers; `story_measure`: the pass rate of greedy replies to the test instructions and the answer loss
of their stories. `preference_epilogue` and `story_epilogue` say what a run measured, where it went, and what next.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ...data.instruct import build_examples
from ...data.story_instructions import StoryInstruction
from ...distributed import World, all_reduce_sum
from ...eval.loss import answer_loss_sum
from ...eval.overlap import token_f1
from ...eval.uncertainty import wilson_interval
from ...paths import shown
from ...runtime import autocast
from ..replies import SHOWN_REPLIES, chat_replies
from ..verifier import Verifier
from .on_policy import PAIRS_FILE, greedy_pass_rate
from .trainer import DPOTrainer

DPO_REPORT = "dpo_eval.json"


def preference_measure(trainer: DPOTrainer, pairs, world: World) -> dict:
    """The preference summary on the test pairs (every rank) and, on rank 0, the greedy replies to the prompts of
    `pairs` scored against their chosen and rejected answers."""
    measured = {"preference": trainer.preference(trainer.test_pairs, trainer.test_reference)}
    if world.is_main:
        started = time.perf_counter()
        texts, _ = chat_replies(trainer.model, trainer.template, [p.prompt for p in pairs])
        to_chosen = [token_f1(t, p.chosen_text) for t, p in zip(texts, pairs)]
        to_rejected = [token_f1(t, p.rejected_text) for t, p in zip(texts, pairs)]
        closer = sum(c > r for c, r in zip(to_chosen, to_rejected))
        low, high = wilson_interval(closer, len(pairs))
        measured["replies"] = {
            "prompts": len(pairs), "closer_to_chosen": closer / len(pairs), "closer_low": low, "closer_high": high,
            "ties": sum(c == r for c, r in zip(to_chosen, to_rejected)),
            "f1_chosen": sum(to_chosen) / len(pairs), "f1_rejected": sum(to_rejected) / len(pairs),
            "seconds": round(time.perf_counter() - started, 1),
            "shown": [{"prompt": p.prompt[-1]["content"], "reply": t, "chosen": p.chosen_text,
                       "rejected": p.rejected_text} for p, t in zip(pairs[:SHOWN_REPLIES], texts)]}
    return measured


def story_measure(trainer: DPOTrainer, verifier: Verifier, instructions: Sequence[StoryInstruction],
                  system_prompt: str, world: World) -> dict:
    """The greedy pass rate of `instructions` (rank 0) and the answer loss of their stories (every rank): the SFT
    target, which DPO should not make less likely."""
    test = build_examples([i.record() for i in instructions], trainer.template, trainer.model_config.block_size,
                          system_prompt)
    total, count = answer_loss_sum(trainer.model, test.rendered, trainer.cfg.eval_batch_size, trainer.device,
                                   trainer.template.pad, autocast(trainer.device, trainer.dtype),
                                   trainer.tokenizer, rank=world.rank, world_size=world.size)
    total, count = all_reduce_sum([total, count], trainer.device)
    measured = {"story_loss": total / count, "stories": len(test)}
    if world.is_main:
        rate, replies = greedy_pass_rate(trainer.model, trainer.template, verifier, instructions, system_prompt)
        measured.update(pass_rate=rate, shown=[{"instruction": i.instruction, "reply": r}
                                               for i, r in zip(instructions[:SHOWN_REPLIES], replies)])
    return measured


def preference_epilogue(report: dict, out: Path) -> str:
    """What the run measured, where it went, and the next command."""
    before, after = report["before"], report["after"]
    pb, pa = before["preference"], after["preference"]
    rb, ra = before["replies"], after["replies"]
    return (f"test preference accuracy (implicit reward of chosen > rejected, {pa['pairs']} test pairs that chose "
            f"nothing): {100 * pb['accuracy']:.1f}% before (the reference itself: {pb['ties']} ties count half), "
            f"{100 * pa['accuracy']:.1f}% after (95% interval {100 * pa['accuracy_low']:.1f}-"
            f"{100 * pa['accuracy_high']:.1f}%); mean margin {pa['margin']:+.3f} (chosen reward "
            f"{pa['chosen_reward']:+.3f}, rejected {pa['rejected_reward']:+.3f}); best.pt is step {after['step']}, the "
            f"lowest DPO loss on the validation pairs ({after['validation_loss']:.4f})\n"
            f"the model's own preference (log-probability of chosen > rejected): "
            f"{100 * pb['likelihood_accuracy']:.1f}% before, {100 * pa['likelihood_accuracy']:.1f}% after\n"
            f"greedy replies closer to the chosen answer than to the rejected one (token F1, {ra['prompts']} test "
            f"prompts): {100 * rb['closer_to_chosen']:.1f}% before, {100 * ra['closer_to_chosen']:.1f}% after "
            f"({rb['ties']} and {ra['ties']} ties); their mean token F1 against the chosen answers: "
            f"{rb['f1_chosen']:.3f} before, {ra['f1_chosen']:.3f} after\n"
            f"{report['steps']} steps in {report['dpo_seconds']:.0f} s of training, wall time "
            f"{report['wall_seconds']:.0f} s; report in {shown(out / DPO_REPORT)}\n"
            f"next: python -m tinylm.chat --ckpt {shown(out)}")


def story_epilogue(report: dict, out: Path) -> str:
    """What a stories run measured, where it went, and the next command."""
    before, after = report["pass_rate"]["before"], report["pass_rate"]["after"]
    kinds = ", ".join(f"{kind} {100 * before['kinds'][kind]['held']:.0f}% -> {100 * held['held']:.0f}%"
                      for kind, held in after["kinds"].items())
    preference = report["after"]["validation_preference"]
    return (f"test pass rate (greedy replies to {after['instructions']} test instructions, the verifier): "
            f"{100 * before['pass_rate']:.1f}% before ({100 * before['low']:.1f}-{100 * before['high']:.1f}%), "
            f"{100 * after['pass_rate']:.1f}% after ({100 * after['low']:.1f}-{100 * after['high']:.1f}%, 95% Wilson); "
            f"constraints held: {kinds}\n"
            f"answer loss of the {report['after']['stories']} test stories: {report['before']['story_loss']:.4f} "
            f"before, {report['after']['story_loss']:.4f} after\n"
            f"best.pt is step {report['after']['step']}, the highest validation pass rate "
            f"({100 * report['after']['validation_pass_rate']:.1f}%); on the validation pairs its preference accuracy "
            f"is {100 * preference['accuracy']:.1f}%, chosen reward {preference['chosen_reward']:+.3f}, rejected "
            f"{preference['rejected_reward']:+.3f}\n"
            f"{report['steps']} steps on {report['pairs']['train']['pairs']} pairs in {report['dpo_seconds']:.0f} s of "
            f"training, wall time {report['wall_seconds']:.0f} s; report in {shown(out / DPO_REPORT)}, pairs in "
            f"{shown(out / PAIRS_FILE)}\n"
            f"next: python -m tinylm.chat --ckpt {shown(out)}")
