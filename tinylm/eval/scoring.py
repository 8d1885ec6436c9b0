"""Score a model on a benchmark by log-likelihood, as the field does: nothing is trained, and for all but generative
benchmarks nothing is generated either.

Each item becomes rows of (context, continuation) tokens: a multiple-choice item one row per choice, a schema item
one row per context (the shared continuation is what is scored: "partial scoring"), a cloze one row. A row's score is
the summed loss of its continuation's tokens given everything before it, and whether each of those tokens was the
model's greedy choice. Rows of many items go through the model in one padded batch. The text is split into tokens
as lm-evaluation-harness splits it (trailing spaces of the context move to the continuation, and the continuation's
tokens are the whole text's after the context's), with the tokenizer's end-of-text token first where it has one.

Shots: `benchmark.shots` solved examples before the item, drawn as DCLM draws them (random.Random(1234 + index)
from the benchmark's other items) or from a pool (MMLU's dev split, in order). A prompt longer than the model's
context drops shots from the left until it fits; an item that does not fit with none is left out, and both are
counted. HellaSwag is such a benchmark; `evaluate_hellaswag` splits its items over torchrun's processes.
"""

from __future__ import annotations

import math
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from ..distributed import all_reduce_sum, current_world
from ..errors import InputError
from ..runtime import evaluating, model_device
from .benchmarks import Benchmark, Cloze, Generative, Item, MultipleChoice, Schema
from .hellaswag import check_tokenizer
from .loss import target_losses

SHOT_SEPARATOR = "\n\n"
SEED = 1234  # DCLM's and nanochat's: item i's shots come from random.Random(SEED + i)
BATCH_ROWS = 32  # rows of several items scored in one padded forward


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context ids, continuation ids), split as lm-evaluation-harness splits them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids):]


def texts(benchmark: Benchmark, item: Item, prefix: str) -> list[tuple[str, str]]:
    """The item's rows as (context, continuation) text after `prefix` (the preamble and the shots)."""
    if isinstance(item, MultipleChoice):
        return [(prefix + item.query + benchmark.delimiter, choice) for choice in item.choices]
    if isinstance(item, Schema):
        return [(prefix + context + benchmark.delimiter, item.continuation) for context in item.contexts]
    if isinstance(item, Cloze):
        return [(prefix + item.context.strip() + benchmark.delimiter, item.continuation)]
    return [(prefix + f"Question: {item.question}\nAnswer:", "")]


def solved(benchmark: Benchmark, example: Item) -> str:
    """A shot: the example with its right answer (its right row's context and continuation, joined)."""
    if isinstance(example, Generative):
        return f"Question: {example.question}\nAnswer: {example.answer}"
    context, continuation = texts(benchmark, example, "")[getattr(example, "gold", 0)]  # a cloze has one row
    return context + continuation


def shots_for(benchmark: Benchmark, index: int) -> list[Item]:
    """Item `index`'s shots, before any are dropped."""
    if benchmark.shots == 0:
        return []
    if benchmark.pools is not None:
        return benchmark.pools[benchmark.subjects[index]][: benchmark.shots]
    pool = benchmark.shot_pool if benchmark.shot_pool is not None else benchmark.items
    others = range(len(pool)) if benchmark.shot_pool is not None else [i for i in range(len(pool)) if i != index]
    return [pool[i] for i in random.Random(SEED + index).sample(list(others), min(benchmark.shots, len(others)))]


@dataclass
class Rendered:
    """One item as token rows, with the shots it kept."""

    index: int
    rows: list[tuple[list[int], list[int]]]
    shots: int
    texts: list[tuple[str, str]] = field(default_factory=list)
    truncated: bool = False  # the context lost tokens from the left to fit (render's `truncate`)


def render(benchmark: Benchmark, index: int, tokenizer, block_size: int, answer_room: int = 0,
           truncate: bool = False) -> Rendered | None:
    """Item `index` with as many of its shots as fit the context (dropped from the left), None if none fit.
    `answer_room` tokens are kept free for a generated answer. `truncate`: an item that does not fit even without
    shots keeps the last tokens of its context that fit, as the harness does, instead of being left out."""
    item, shots, bos = benchmark.items[index], shots_for(benchmark, index), start_ids(tokenizer)
    for first in range(len(shots) + 1):
        kept = shots[first:]
        prefix = benchmark.preamble(index) + "".join(solved(benchmark, shot) + SHOT_SEPARATOR for shot in kept)
        pairs = texts(benchmark, item, prefix)
        rows = [encode_pair(tokenizer, context, continuation) for context, continuation in pairs]
        longest = max(len(bos) + len(context) + len(continuation) for context, continuation in rows)
        if longest - 1 + answer_room <= block_size:
            return Rendered(index, [(bos + context, continuation) for context, continuation in rows], len(kept), pairs)
    if truncate and not answer_room and all(len(continuation) < block_size for _, continuation in rows):
        return Rendered(index, [((bos + context)[-(block_size + 1 - len(continuation)):], continuation)
                                for context, continuation in rows], 0, pairs, truncated=True)
    return None


def start_ids(tokenizer) -> list[int]:
    eot = getattr(tokenizer, "eot_token", None)
    return [] if eot is None or eot == getattr(tokenizer, "unk_id", None) else [eot]


@torch.no_grad()
def score_rows(model, tokenizer, rows: Sequence[tuple[list[int], list[int]]], device) -> list[tuple[float, int, bool]]:
    """Per row (summed loss of the continuation in nats, its tokens, whether every one was the greedy choice), all
    rows in one padded forward. A trimmed vocabulary's <unk> targets cost its `unk_penalty` more, as everywhere in
    tinylm.eval, so losses are per GPT-2 token. Every row needs a context token (the end-of-text token counts): the
    first continuation token is predicted from it."""
    if not all(context for context, _ in rows):
        raise InputError("a continuation with nothing before it cannot be scored: its first token needs a context "
                         "token to be predicted from; give the item some context (a tokenizer without an end-of-text "
                         "token has no start token to put there)")
    width = max(len(context) + len(continuation) for context, continuation in rows) - 1
    tokens = torch.zeros((len(rows), width + 1), dtype=torch.long)
    scored = torch.zeros((len(rows), width), dtype=torch.bool)
    for r, (context, continuation) in enumerate(rows):
        row = context + continuation
        tokens[r, : len(row)] = torch.tensor(row)
        scored[r, len(context) - 1: len(row) - 1] = True  # position t predicts token t + 1
    tokens, scored = tokens.to(device), scored.to(device)
    x, y = tokens[:, :-1], tokens[:, 1:]
    hidden = model.hidden_states(x)[scored]  # (N, C): only the continuations' positions reach the head
    logits = model.head(hidden)[:, : tokenizer.vocab_size]  # (N, vocab)
    targets = y[scored]  # (N,)
    losses = target_losses(logits, targets, tokenizer)  # (N,)
    hits = logits.argmax(-1) == targets
    row_of = scored.nonzero()[:, 0]  # (N,): the row of each scored position, in order
    counts = torch.bincount(row_of, minlength=len(rows))
    sums = torch.zeros(len(rows), device=losses.device).index_add_(0, row_of, losses)
    misses = torch.zeros(len(rows), device=losses.device).index_add_(0, row_of, (~hits).float())
    return [(float(sums[r]), int(counts[r]), bool(misses[r] == 0)) for r in range(len(rows))]


def results_file(ckpt: Path, name: str, limit: int | None) -> Path:
    """Where a benchmark's results go: eval/ in the checkpoint's run folder, the limit in the name."""
    folder = ckpt if ckpt.is_dir() else ckpt.parent
    return folder / "eval" / (f"{name}-limit{limit}.json" if limit else f"{name}.json")


@dataclass
class BenchmarkResult:
    """A benchmark's scores: per scored item whether it was right (`correct`, by its main metric) and the
    metrics over those items; the items left out (no room even without shots) and those run with fewer shots.
    `task`: the benchmark's name (CORE's word for one of its benchmarks, kept in the saved JSON)."""

    task: str
    kind: str
    shots: int
    baseline: float
    indices: list[int]
    correct: list[bool]
    metrics: dict[str, float]
    left_out: int
    fewer_shots: int
    seconds: float = 0.0
    details: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(self.correct) / len(self.correct) if self.correct else math.nan

    @property
    def centred(self) -> float:
        """DCLM's centring: 0 at the random baseline, 1 at perfect."""
        return (self.accuracy - self.baseline) / (1 - self.baseline)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "kind": self.kind, "shots": self.shots, "baseline": self.baseline,
                "items": len(self.correct), "left_out": self.left_out, "fewer_shots": self.fewer_shots,
                "accuracy": self.accuracy, "centred": self.centred, **self.metrics, "seconds": self.seconds,
                "indices": self.indices, "correct": self.correct}


def verdict(benchmark: Benchmark, rendered: Rendered, scores: list[tuple[float, int, bool]]) -> dict[str, Any]:
    """An item's verdicts from its rows' scores: a cloze's, whether every token was the greedy choice (acc); a choice
    item's, whether the choice each rule picks is right: lowest summed loss (acc), lowest mean loss per token
    (acc_norm, DCLM's and build-nanogpt's) and lowest loss per character of the choice (acc_norm_char, the
    harness's)."""
    item = benchmark.items[rendered.index]
    base = {"index": rendered.index, "shots": rendered.shots, "truncated": rendered.truncated}
    if isinstance(item, Cloze):
        loss, count, greedy = scores[0]
        return base | {"acc": greedy, "loss": loss, "tokens": count}
    sums = [loss for loss, _, _ in scores]
    per_token = [loss / max(count, 1) for loss, count, _ in scores]
    options = item.choices if isinstance(item, MultipleChoice) else (item.continuation,) * len(scores)
    per_char = [loss / max(len(option), 1) for loss, option in zip(sums, options)]
    pick = {name: min(range(len(values)), key=values.__getitem__)
            for name, values in (("acc", sums), ("acc_norm", per_token), ("acc_norm_char", per_char))}
    return base | {name: choice == item.gold for name, choice in pick.items()} | {"losses": sums}


def evaluate_benchmark(model, tokenizer, benchmark: Benchmark, *, limit: int | None = None,
                       progress: Callable | None = None, max_new_tokens: int = 256,
                       truncate: bool = False) -> BenchmarkResult:
    """Score the first `limit` items of `benchmark` (all if None) on the model's device, BATCH_ROWS rows a forward.
    `progress` wraps the item indices (e.g. tqdm). `truncate`: an item too long for the context even without shots
    loses context from the left (render)."""
    device = model_device(model)
    block_size = model.config.block_size
    indices = list(range(len(benchmark.items) if limit is None else min(limit, len(benchmark.items))))
    if not indices:
        raise InputError(f"{benchmark.name} has no items to score")
    started = time.perf_counter()
    generative = benchmark.kind == "generative"
    room = min(max_new_tokens, block_size // 2) if generative else 0
    details, pending, left_out = [], [], 0

    def flush():
        rows = [row for rendered in pending for row in rendered.rows]
        scores = iter(score_rows(model, tokenizer, rows, device)) if rows else iter(())
        for rendered in pending:
            details.append(verdict(benchmark, rendered, [next(scores) for _ in rendered.rows]))
        pending.clear()

    with evaluating(model):
        for index in (progress(indices) if progress else indices):
            rendered = render(benchmark, index, tokenizer, block_size, room, truncate)
            if rendered is None:
                left_out += 1
            elif generative:
                details.append(generate_answer(model, tokenizer, benchmark, rendered, room))
            else:
                pending.append(rendered)
                if sum(len(r.rows) for r in pending) >= BATCH_ROWS:
                    flush()
        flush()
    return summarise(benchmark, details, left_out, time.perf_counter() - started)


MAIN_METRIC = {"multiple_choice": "acc_norm", "schema": "acc_norm", "language_modeling": "acc",
               "generative": "exact_match"}


def summarise(benchmark: Benchmark, details: list[dict[str, Any]], left_out: int, seconds: float) -> BenchmarkResult:
    main = MAIN_METRIC[benchmark.kind]
    metrics: dict[str, float] = {}
    if details:
        names = [name for name in ("acc", "acc_norm", "acc_norm_char", "exact_match") if name in details[0]]
        metrics = {name: sum(d[name] for d in details) / len(details) for name in names}
        if benchmark.kind == "language_modeling":  # per item, as the harness and OpenAI report LAMBADA's perplexity
            metrics["perplexity"] = math.exp(sum(d["loss"] for d in details) / len(details))
    return BenchmarkResult(benchmark.name, benchmark.kind, benchmark.shots, benchmark.baseline,
                           [d["index"] for d in details], [bool(d[main]) for d in details], metrics, left_out,
                           sum(d["shots"] < benchmark.shots for d in details), seconds, details)


# Each accuracy of a multiple-choice benchmark, the count it divides and the rule that picks a choice
ACCURACIES = (("acc", "correct", "lowest summed loss"), ("acc_norm", "correct_norm", "lowest mean loss per token"),
              ("acc_norm_char", "correct_norm_char", "lowest loss per character of the ending"))


def evaluate_hellaswag(model, tokenizer, items: Iterable[MultipleChoice]) -> dict[str, Any]:
    """HellaSwag's `items` scored as CORE scores them (evaluate_benchmark, zero-shot; an item longer than the context
    loses context from the left): {"examples", "correct", "correct_norm", "correct_norm_char", "acc", "acc_norm",
    "acc_norm_char", "left_out", "indices", "correct_items"}.

    The counts are the examples each rule (ACCURACIES) gets right, the acc keys their fractions; `indices` are the
    items scored and `correct_items` their acc_norm verdicts; `left_out` the items whose ending alone overfills the
    context. Under torch.distributed each rank scores every W-th item and the verdicts are summed over ranks on
    the model's device (all ranks must call this with the same list).
    """
    check_tokenizer(model, tokenizer)
    items, world = list(items), current_world()
    mine = range(world.rank, len(items), world.size)
    table = [[0.0] * len(items) for _ in range(1 + len(ACCURACIES))]  # rows: scored, then right by each rule
    if mine:
        share = Benchmark("hellaswag", [items[i] for i in mine], baseline=0.25)
        for detail in evaluate_benchmark(model, tokenizer, share, truncate=True).details:
            item = mine[detail["index"]]
            table[0][item] = 1.0
            for row, (key, _, _) in enumerate(ACCURACIES, start=1):
                table[row][item] = float(detail[key])
    # one collective for all of it
    summed = all_reduce_sum([value for row in table for value in row], model_device(model))
    scored, *rights = (summed[row * len(items):(row + 1) * len(items)] for row in range(len(table)))
    indices = [i for i in range(len(items)) if scored[i]]
    if not indices:
        raise InputError("no HellaSwag example to score (none given, or none fits the model's context)")
    counts = {count: int(sum(right)) for (_, count, _), right in zip(ACCURACIES, rights)}
    return {"examples": len(indices), **counts, **{key: counts[count] / len(indices) for key, count, _ in ACCURACIES},
            "left_out": len(items) - len(indices), "indices": indices,
            "correct_items": [bool(rights[1][i]) for i in indices]}


# GSM8K: the answer is the number after "#### " (the strict rule), else the last number in the reply (the harness's
# "flexible extract"); both are compared after dropping $, commas, and a trailing "." or ".0".
FINAL_ANSWER = re.compile(r"####\s*(-?[$0-9.,]+)")
NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def normalise_number(text: str) -> str:
    text = text.replace("$", "").replace(",", "").rstrip(".")
    if re.fullmatch(r"-?\d+\.0*", text):
        text = text.split(".")[0]
    return text


def extract_answer(text: str) -> str | None:
    """The final answer of a GSM8K solution or reply, normalised; None where it names no number."""
    found = FINAL_ANSWER.search(text)
    if found:
        return normalise_number(found.group(1))
    numbers = NUMBER.findall(text)
    return normalise_number(numbers[-1]) if numbers else None


def generate_answer(model, tokenizer, benchmark: Benchmark, rendered: Rendered, room: int) -> dict[str, Any]:
    """Greedy decoding of a generative item until a blank line or a new question, scored by exact match."""
    from ..generate.stream import stream

    prompt = rendered.rows[0][0]
    reply = "".join(stream(model, tokenizer, prompt, room, stop=("\n\n", "Question:"), temperature=0))
    item = benchmark.items[rendered.index]
    expected = extract_answer(item.answer)
    return {"index": rendered.index, "shots": rendered.shots, "reply": reply,
            "exact_match": expected is not None and extract_answer(reply) == expected}

