"""Preference pairs made by a verifier from the model's own replies (on-policy), and the verifier's pass rate.

This is how preference data is made from a verifier in practice: the starting (SFT) model samples `samples` replies
to each instruction at temperature 1, the verifier (tinylm.posttrain.verifier) ranks them, a pass above every fail
and fails by how many of its checks hold (`rank`), and an instruction gives one pair, chosen = a reply of the top
rank (a passing one wherever one passed), rejected = a failing one of the bottom rank, each drawn at random among
those DPO can score (not empty, within the context). Replies that all rank alike (all pass, or all fail alike) give
no pair. The pairs are the model's own text, so DPO moves probability between replies it already writes. Sampling
is reproducible for a seed (one generator seed per batch, drawn from it) and shows its progress; `write_pairs` keeps
the pairs in the run folder so that --resume, or another run from the same model, trains on the same ones.
`greedy_pass_rate` scores greedy replies.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ...data.story_instructions import StoryInstruction
from ...errors import InputError
from ...generate.decode import generate_batch
from ...paths import atomic_write, shown
from ...tokenizers.chat_template import ChatTemplate
from ..replies import chat_replies, text_vocab_limit
from ..stories import STORY_REPLY_TOKENS, story_prompts
from ..verifier import Verdict, Verifier, pass_rate

PAIRS_FILE = "pairs.json"


def greedy_pass_rate(model, template: ChatTemplate, verifier: Verifier, instructions: Sequence[StoryInstruction],
                     system_prompt: str) -> tuple[dict, list[str]]:
    """(`pass_rate` of the greedy replies to `instructions`, the replies)."""
    replies, _ = chat_replies(model, template, story_prompts(instructions, system_prompt),
                              max_new_tokens=STORY_REPLY_TOKENS)
    return pass_rate(verifier.check(replies, instructions)), replies


def sample_replies(model, template: ChatTemplate, prompts: Sequence[list[dict]], samples: int, seed: int,
                   batch_size: int = 64, desc: str = "sampling replies") -> list[list[str]]:
    """`samples` replies to each prompt at temperature 1, up to <|im_end|>, STORY_REPLY_TOKENS or the end of the
    context (a longer conversation DPO could not score): the same for a seed (and batch size). A progress bar counts
    the replies."""
    rows = [prompt for prompt in prompts for _ in range(samples)]
    seeds = random.Random(seed)
    texts = []
    with tqdm(total=len(rows), unit="reply", desc=desc) as bar:
        for start in range(0, len(rows), batch_size):
            ids = [template.render_prompt(p) for p in rows[start : start + batch_size]]
            room = model.config.block_size - 1 - max(len(i) for i in ids)  # <|im_end|> and a newline close it
            made = generate_batch(model, ids, max(1, min(STORY_REPLY_TOKENS, room)), stop_tokens=(template.im_end,),
                                  temperature=1.0, seed=seeds.getrandbits(63),
                                  vocab_limit=text_vocab_limit(template.tokenizer))
            texts += [template.tokenizer.decode(r) for r in made]
            bar.update(len(ids))
    return [texts[i : i + samples] for i in range(0, len(texts), samples)]


def rank(verdict: Verdict) -> tuple[bool, int]:
    """A reply's place in the verifier's order: passed first, then the number of checks that hold (its
    constraints, the ending, fluency)."""
    return verdict.passed, sum(verdict.holds.values()) + verdict.ends + verdict.fluent


@dataclass
class OnPolicyPairs:
    """Preference records ({instruction, chosen, rejected}) and what the sampling found."""

    records: list[dict]
    counts: dict[str, int]  # instructions, replies, passed (replies), pairs, chosen_passed; no pair: tied, unusable

    def describe(self) -> str:
        c = self.counts
        return (f"{c['pairs']:,} pairs from {c['instructions']:,} instructions x {c['replies'] // c['instructions']} "
                f"replies ({100 * c['passed'] / c['replies']:.1f}% of the replies pass), {c['chosen_passed']} with a "
                f"passing chosen reply; no pair: {c['tied']} whose replies rank alike, {c['unusable']} whose top or "
                "bottom replies are all empty or too long")


def on_policy_pairs(model, template: ChatTemplate, verifier: Verifier, instructions: Sequence[StoryInstruction],
                    samples: int, seed: int, system_prompt: str, block_size: int, desc: str) -> OnPolicyPairs:
    """Sample, rank and pair as the module docstring says; an empty reply, or one whose conversation exceeds
    block_size + 1 tokens, is never drawn (DPO could not score it)."""
    prompts = story_prompts(instructions, system_prompt)
    sampled = sample_replies(model, template, prompts, samples, seed, desc=desc)
    verdicts = verifier.check([reply for replies in sampled for reply in replies],
                              [i for i in instructions for _ in range(samples)])
    counts = dict(instructions=len(instructions), replies=len(verdicts), passed=sum(v.passed for v in verdicts),
                  pairs=0, chosen_passed=0, tied=0, unusable=0)
    draw, records = random.Random(seed), []
    for n, (instruction, prompt, replies) in enumerate(zip(instructions, prompts, sampled)):
        ranks = [rank(v) for v in verdicts[n * samples : (n + 1) * samples]]
        if max(ranks) == min(ranks):
            counts["tied"] += 1
            continue
        usable = [bool(r.strip()) and len(template.render([*prompt, {"role": "assistant", "content": r.strip()}]))
                  <= block_size + 1 for r in replies]
        best = [r for r, k, u in zip(replies, ranks, usable) if u and k == max(ranks)]
        worst = [r for r, k, u in zip(replies, ranks, usable) if u and k == min(ranks)]
        if not best or not worst:
            counts["unusable"] += 1
            continue
        records.append({"instruction": instruction.instruction, "chosen": draw.choice(best),
                        "rejected": draw.choice(worst)})
        counts["chosen_passed"] += max(ranks)[0]
    counts["pairs"] = len(records)
    return OnPolicyPairs(records, counts)


def write_pairs(out: Path, parts: dict[str, OnPolicyPairs], about: dict) -> None:
    """OUT/pairs.json: each part's records and counts, and `about` (where and how they were sampled)."""
    saved = {**about, **{name: {"counts": part.counts, "records": part.records} for name, part in parts.items()}}
    with atomic_write(out / PAIRS_FILE) as f:
        f.write(json.dumps(saved, indent=1, ensure_ascii=False).encode("utf-8"))


def read_pairs(path: Path, names: Sequence[str], lost: str) -> tuple[dict[str, OnPolicyPairs], dict]:
    """(the parts `write_pairs` saved in the file at `path`, what it says of them); `lost` ends the message of an
    InputError when the file cannot be read."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        parts = {name: OnPolicyPairs(saved[name]["records"], saved[name]["counts"]) for name in names}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{shown(path)} cannot be read ({error}): {lost}") from None
    return parts, {key: value for key, value in saved.items() if key not in names}
