"""Preference pairs that a task's check makes from the model's own replies (on-policy), for DPO.

This is how preference data is made from a verifier in practice: the starting model samples `samples` replies to
each problem at temperature 1, the task scores them, a pass ranks above every fail and fails by how many of their
checks held (`rank`), and a problem gives one pair: chosen a reply of the top rank, rejected one of the bottom
rank, each drawn at random among those DPO can score (not empty, within the context). Replies that all rank alike
give no pair. The pairs are the model's own text, so DPO moves probability between replies it already writes.
`write_pairs` keeps them in the run folder, so that --resume, or another run from the same model, trains on them;
`passing_chosen` gives SFT the passing chosen replies alone (rejection-sampling fine-tuning, DPO's control).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import InputError
from ..generate.sampling import sampling_only
from ..paths import shown, write_json
from .chat_task import ChatTask, chat_template
from .replies import complete
from .task import Score

PAIRS_FILE = "pairs.json"
SAMPLING_BATCH = 64  # replies sampled at once: the replies of a seed depend on it


def sample_replies(model, tokenizer, task: ChatTask, problems: Sequence, samples: int,
                   desc: str = "sampling replies", **sampling) -> list[list[list[int]]]:
    """`samples` completions (ids) of each problem, the same for a seed, short enough that the conversation with
    <|im_end|> and a newline after the reply fits the context (DPO scores it whole); a progress bar counts them.
    `sampling`: the sampler's settings (temperature=1.0, seed=0, ..., or sampling=Sampling(...)); the seed seeds
    each batch's."""
    sampling = sampling_only(sampling)
    rows = [problem for problem in problems for _ in range(samples)]
    seeds, made = random.Random(sampling.seed or 0), []
    with tqdm(total=len(rows), unit="reply", desc=desc) as bar:
        for start in range(0, len(rows), SAMPLING_BATCH):
            prompts = [task.prompt_ids(tokenizer, p) for p in rows[start : start + SAMPLING_BATCH]]
            room = model.config.block_size - 1 - max(len(p) for p in prompts)
            made += complete(model, tokenizer, task, prompts, max(1, min(task.reply_tokens, room)),
                             dataclasses.replace(sampling, seed=seeds.getrandbits(63)))
            bar.update(len(prompts))
    return [made[i : i + samples] for i in range(0, len(made), samples)]


def rank(score: Score) -> tuple[bool, int]:
    """A reply's place in the task's order: passed first, then the number of its checks that held."""
    return score.correct, sum(score.kinds.values())


@dataclasses.dataclass
class OnPolicyPairs:
    """Preference records ({instruction, chosen, rejected, chosen_passed}) and what the sampling found."""

    records: list[dict]
    counts: dict[str, int]  # problems, replies, passed (replies), pairs, chosen_passed; no pair: tied, unusable

    def describe(self) -> str:
        c = self.counts
        return (f"{c['pairs']:,} pairs from {c['problems']:,} problems x {c['replies'] // c['problems']} replies "
                f"({100 * c['passed'] / c['replies']:.1f}% of the replies pass), {c['chosen_passed']} with a passing "
                f"chosen reply; no pair: {c['tied']} whose replies rank alike, {c['unusable']} whose top or bottom "
                "replies are all empty or too long")


def on_policy_pairs(model, tokenizer, task: ChatTask, problems: Sequence, samples: int, desc: str,
                    **sampling) -> OnPolicyPairs:
    """Sample (`sampling` as `sample_replies`'s, its seed also drawing the pairs), rank and pair as the module
    docstring says; an empty reply, or one whose conversation exceeds the context, is never drawn (DPO could not
    score it)."""
    sampling = sampling_only(sampling)
    sampled = sample_replies(model, tokenizer, task, problems, samples, desc, sampling=sampling)
    flat = [ids for replies in sampled for ids in replies]
    scores = task.score_completions(tokenizer, [p for p in problems for _ in range(samples)], flat)
    texts = task.reply_texts(tokenizer, flat)
    template, room = chat_template(tokenizer), model.config.block_size + 1
    counts = dict(problems=len(problems), replies=len(scores), passed=sum(s.correct for s in scores), pairs=0,
                  chosen_passed=0, tied=0, unusable=0)
    draw, records = random.Random(sampling.seed or 0), []
    for n, problem in enumerate(problems):
        ranks = [rank(s) for s in scores[n * samples : (n + 1) * samples]]
        replies = texts[n * samples : (n + 1) * samples]
        if max(ranks) == min(ranks):
            counts["tied"] += 1
            continue
        prompt = task.messages(problem)[:-1]
        usable = [bool(r) and len(template.render([*prompt, {"role": "assistant", "content": r}])) <= room
                  for r in replies]
        best = [r for r, k, u in zip(replies, ranks, usable) if u and k == max(ranks)]
        worst = [r for r, k, u in zip(replies, ranks, usable) if u and k == min(ranks)]
        if not best or not worst:
            counts["unusable"] += 1
            continue
        passed = max(ranks)[0]
        records.append({"instruction": problem.prompt, "chosen": draw.choice(best), "rejected": draw.choice(worst),
                        "chosen_passed": passed})
        counts["chosen_passed"] += passed
    counts["pairs"] = len(records)
    return OnPolicyPairs(records, counts)


def write_pairs(out: Path, parts: dict[str, OnPolicyPairs], about: dict) -> None:
    """OUT/pairs.json: each part's records and counts, and `about` (where and how they were sampled)."""
    saved = {**about, **{name: {"counts": part.counts, "records": part.records} for name, part in parts.items()}}
    write_json(out / PAIRS_FILE, saved)


def read_pairs(path: Path, names: Sequence[str], lost: str) -> tuple[dict[str, OnPolicyPairs], dict]:
    """(the parts `write_pairs` saved in the file at `path`, what it says of them); `lost` ends the message of an
    InputError when the file cannot be read."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        parts = {name: OnPolicyPairs(saved[name]["records"], saved[name]["counts"]) for name in names}
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{shown(path)} cannot be read ({error}): {lost}") from None
    return parts, {key: value for key, value in saved.items() if key not in names}


def own_pairs(given: Path, start: str | None, names: Sequence[str], lost: str) -> tuple[dict[str, OnPolicyPairs], dict]:
    """`read_pairs` of the DPO run (folder or pairs.json) at `given`, refused where they were not sampled from `start`,
    the path of the model that is to train on them: on-policy pairs are that model's own replies."""
    parts, about = read_pairs(given / PAIRS_FILE if given.is_dir() else given, names, lost)
    if about.get("base") != start:
        sampled_from, starts_from = (shown(p) if p else p for p in (about.get("base"), start))
        raise InputError(f"--data {shown(given)}: its pairs were sampled from {sampled_from}, not from the model this "
                         f"run starts from ({starts_from}); on-policy pairs are that model's own replies: give --base "
                         "the model they came from, or leave --data out")
    return parts, about


def passing_chosen(given: Path, start: str | None) -> list[dict]:
    """The training pairs' passing chosen replies in the DPO run (folder or pairs.json) at `given`, sampled from
    `start` (`own_pairs`), as SFT records ({instruction, output}); an InputError where none passed."""
    parts, _ = own_pairs(given, start, ("train",), "--data takes a DPO run folder (or its pairs.json) whose passing "
                         "chosen replies SFT trains on")
    chosen = [{"instruction": r["instruction"], "output": r["chosen"]} for r in parts["train"].records
              if r["chosen_passed"]]
    if not chosen:
        raise InputError(f"--data {shown(given)}: no chosen reply passed, so there is nothing to fine-tune on")
    return chosen
