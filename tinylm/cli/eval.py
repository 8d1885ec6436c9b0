"""Command line: measure a checkpoint: its loss on a text, a benchmark, or CORE.

`loss` scores a UTF-8 text with the checkpoint's own tokenizer (tinylm.eval.loss.text_loss): nats per token, and
bits per byte, which compare models whose tokenizers differ. `hellaswag` scores HellaSwag's validation set as CORE
does (tinylm.eval.scoring.evaluate_hellaswag; under torchrun the examples are split over processes). `core`,
`benchmark` and `compare` score the mirror's benchmarks by log-likelihood (tinylm.eval.scoring, tinylm.eval.core) and
write JSON beside the run; `harness` runs EleutherAI's lm-evaluation-harness on the checkpoint (tinylm.eval.harness).
Each subcommand's flags are the fields of settings values declared in tinylm/eval/ (tinylm/cli/options.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import time
from pathlib import Path
from typing import Any, Callable

from ..data.text import read_text_file
from ..distributed import device_for, run_in_world
from ..errors import InputError
from ..eval.benchmarks import Selection, named_benchmark, read_hellaswag
from ..eval.core import COUNTED_RULE, compare_results, counted, evaluate_core
from ..eval.hellaswag import HellaSwagOptions, check_tokenizer, val_file
from ..eval.loss import LossOptions, text_loss
from ..eval.scoring import ACCURACIES, evaluate_benchmark, evaluate_hellaswag, results_file
from ..eval.uncertainty import wilson_interval
from ..paths import write_json
from ..runtime import resolve_device
from ..train.checkpoint import CheckpointError, checkpoint_file, load_model
from .console import add_subcommand, begin, command_parser
from .errors import run_cli
from .flags import add_batch_size, add_ckpt, add_device, add_json
from .options import add_options, options_from


def run_loss(args: argparse.Namespace) -> dict[str, Any]:
    checkpoint_file(args.ckpt)  # a wrong checkpoint path, then a wrong text path, fail before the model loads
    text = read_text_file(args.loss.text)
    ckpt_file, model, tokenizer, state = load_for_scoring(args.ckpt, args.device)
    result = text_loss(model, tokenizer, text, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"ckpt": str(ckpt_file), "text": str(args.loss.text), **result}))
    else:
        kind = tokenizer.to_dict()["kind"]
        print(f"checkpoint:    {ckpt_file} (step {state.get('step', '?')}, {kind} tokenizer of "
              f"{tokenizer.vocab_size:,}, context {model.config.block_size})")
        print(f"text:          {args.loss.text}")
        print(f"tokens:        {result['tokens']:,} predicted")
        print(f"bytes:         {result['bytes']:,}")
        print(f"loss:          {result['loss']:.4f} nats/token (perplexity {math.exp(result['loss']):.2f})")
        print(f"bits per byte: {result['bits_per_byte']:.4f}")
    return result


def run_hellaswag(args: argparse.Namespace) -> dict[str, Any]:
    return run_in_world(lambda world: _hellaswag(args, world))  # under torchrun each rank scores every W-th


def _hellaswag(args: argparse.Namespace, world) -> dict[str, Any]:
    ckpt_file = checkpoint_file(args.ckpt)
    device = resolve_device(device_for(world, args.device))
    model, tokenizer, state = load_model(ckpt_file, device)
    check_tokenizer(model, tokenizer)  # before the data is fetched
    val, limit = val_file(args.hellaswag), args.selection.limit
    result = evaluate_hellaswag(model, tokenizer, read_hellaswag(val.path, limit))
    if not world.is_main:
        return result
    if args.json:
        print(json.dumps({"ckpt": str(ckpt_file), "data": str(val.path), "official": val.official,
                          "data_note": val.description, **result}))
        return result
    print(f"checkpoint: {ckpt_file} (step {state.get('step', '?')}, context {model.config.block_size})")
    print(f"data:       {val.path}")
    print(f"            {val.description}")
    print(f"examples:   {result['examples']:,}" + (f" (the first {limit:,})" if limit else "")
          + (f"; {result['left_out']:,} left out (an ending longer than the context)" if result["left_out"] else ""))
    for key, count, rule in ACCURACIES:
        low, high = wilson_interval(result[count], result["examples"])
        share = f"{result[count]:,}/{result['examples']:,}"
        print(f"{key + ':':<15} {result[key]:.4f} [{low:.3f}, {high:.3f}] ({share}; {rule})")
    print("                [95% interval]; chance is 0.25")
    return result


def load_for_scoring(ckpt: str, device: str | None):
    """(checkpoint file, model, tokenizer, checkpoint dict) of `ckpt`, which must carry its tokenizer."""
    ckpt_file = checkpoint_file(ckpt)
    model, tokenizer, state = load_model(ckpt_file, resolve_device(device))
    if tokenizer is None:
        raise CheckpointError(f"{ckpt_file} carries no tokenizer, so no text can be turned into its ids")
    return ckpt_file, model, tokenizer, state


def item_bar(name: str):
    from tqdm.auto import tqdm

    return lambda items: tqdm(items, desc=name, unit="item", leave=False)


def result_lines(result, in_core: bool = False) -> list[str]:
    """A benchmark's result: its main accuracy with a 95% Wilson interval, the other metrics, and what did not fit;
    `in_core`: a task too little of which fits to count in CORE says so."""
    n, right = len(result.correct), sum(result.correct)
    if n == 0:
        return [f"{result.task:<34} no item fits the model's context ({result.left_out} left out)"]
    if in_core and not counted(result):
        return [f"{result.task:<34} not counted: {n} of {n + result.left_out} items fit the model's context"]
    low, high = wilson_interval(right, n)
    others = ", ".join(f"{key} {value:.4g}" for key, value in result.metrics.items())
    fit = (f"; {result.fewer_shots} with fewer than {result.shots} shots" if result.fewer_shots else "") + (
        f"; {result.left_out} left out (too long even without shots)" if result.left_out else "")
    return [f"{result.task:<34} {right / n:.3f} [{low:.3f}, {high:.3f}] of {n:,}, chance {result.baseline:.2f}, "
            f"centred {result.centred:+.3f}  ({others}{fit})"]


def run_core(args: argparse.Namespace) -> dict[str, Any]:
    limit = args.selection.limit
    started = time.perf_counter()
    ckpt_file, model, tokenizer, _ = load_for_scoring(args.ckpt, args.device)
    core = evaluate_core(model, tokenizer, limit=limit, tasks=args.selection.tasks, progress=item_bar)
    payload = {"ckpt": str(ckpt_file), "limit": limit, **core.to_dict(),
               "seconds": time.perf_counter() - started}
    path = write_json(results_file(Path(args.ckpt), "core", limit), payload)
    if args.json:
        print(json.dumps(payload))
        return payload
    print(f"checkpoint: {ckpt_file} (context {model.config.block_size})")
    if core.left_out_share > 0.5:
        print(f"note: {100 * core.left_out_share:.0f}% of the items asked do not fit the model's context of "
              f"{model.config.block_size} tokens even without shots; {COUNTED_RULE}")
    for result in core.results:
        print(*result_lines(result, in_core=True), sep="\n")
    print(f"CORE {core.score:.4f}: the mean centred accuracy of {len(core.scored)} of 22 tasks" +
          (f", each cut to its first {limit:,} items" if limit else "") + f" ({COUNTED_RULE})")
    absent = core.missing + [result.task for result in core.results if not counted(result)]
    if absent:
        print(f"not in this score: {', '.join(absent)} (so it is not the published 22-task figure)")
    print(f"took {payload['seconds']:.0f} s; results written to {path}")
    return payload


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    limit = args.selection.limit
    benchmark = named_benchmark(args.selection.name)
    ckpt_file, model, tokenizer, _ = load_for_scoring(args.ckpt, args.device)
    result = evaluate_benchmark(model, tokenizer, benchmark, limit=limit, progress=item_bar(benchmark.name),
                                truncate=args.selection.truncate)
    if not result.correct:
        raise InputError(f"{benchmark.name}: no item fits the model's context of {model.config.block_size} tokens "
                         f"even without shots ({result.left_out} left out); --truncate scores them with their "
                         "context cut from the left")
    payload = {"ckpt": str(ckpt_file), "source": benchmark.source, "limit": limit, **result.to_dict()}
    path = write_json(results_file(Path(args.ckpt), benchmark.name, limit), payload)
    if args.json:
        print(json.dumps(payload))
        return payload
    print(f"checkpoint: {ckpt_file} (context {model.config.block_size})")
    print(f"benchmark:  {benchmark.name}: {benchmark.source}; {benchmark.shots} shots")
    print(*result_lines(result), sep="\n")
    print(f"took {result.seconds:.0f} s; results written to {path}")
    return payload


def run_compare(args: argparse.Namespace) -> dict[str, Any]:
    if len(args.ckpt) != 2:
        raise InputError(f"compare takes two models, --ckpt A --ckpt B; got {len(args.ckpt)}")
    limit = args.selection.limit
    benchmark = named_benchmark(args.selection.name)
    results = []
    for ckpt in args.ckpt:
        _, model, tokenizer, _ = load_for_scoring(ckpt, args.device)
        results.append(evaluate_benchmark(model, tokenizer, benchmark, limit=limit,
                                          progress=item_bar(Path(ckpt).name), truncate=args.selection.truncate))
    comparison = compare_results(*results)
    test = comparison.test
    payload = {"task": benchmark.name, "ckpt": args.ckpt, "accuracy": [r.accuracy for r in results],
               "gained": comparison.gained, "lost": comparison.lost, "p_value": test.p_value}
    if args.json:
        print(json.dumps(payload))
        return payload
    for ckpt, result in zip(args.ckpt, results):
        print(f"{ckpt}: " + result_lines(result)[0].split(maxsplit=1)[1])
    print(test.describe("A", "B", items="items", right="right", wrong="wrong"))
    print(f"items B gained: {comparison.gained[:20]}{' ...' if len(comparison.gained) > 20 else ''}")
    print(f"items B lost:   {comparison.lost[:20]}{' ...' if len(comparison.lost) > 20 else ''}")
    return payload


def run_harness(args: argparse.Namespace) -> dict[str, Any]:
    from ..eval.harness import LOCAL_TASKS  # lm-evaluation-harness's model class: loaded only when it runs
    from ..eval.harness import run_harness as evaluate

    limit, hub = args.selection.limit, args.selection.hub
    if hub and not args.selection.tasks:
        raise InputError("--hub runs the harness's own tasks: name them, e.g. --tasks hellaswag arc_easy")
    tasks = args.selection.tasks or list(LOCAL_TASKS)
    started = time.perf_counter()
    ckpt_file, model, tokenizer, _ = load_for_scoring(args.ckpt, args.device)
    output = evaluate(model, tokenizer, tasks, limit=limit, hub=hub)
    items = {task: [{"doc_id": sample["doc_id"], "target": sample["target"],
                     "loglikelihoods": [response[0] for response in sample["filtered_resps"]]}
                    for sample in sorted(samples, key=lambda sample: sample["doc_id"])]
             for task, samples in output["samples"].items()}
    payload = {"ckpt": str(ckpt_file), "tasks": tasks, "limit": limit,
               "definitions": "the harness's (hub)" if hub else "tinylm's local task files over the mirror",
               "results": output["results"], "items": items, "seconds": time.perf_counter() - started}
    path = write_json(results_file(Path(args.ckpt), "harness-" + "-".join(tasks), limit), payload)
    if args.json:
        print(json.dumps(payload))
        return payload
    from lm_eval.utils import make_table

    print(f"checkpoint: {ckpt_file} (context {model.config.block_size}); task definitions: {payload['definitions']}")
    print(make_table(output))
    print(f"took {payload['seconds']:.0f} s; results and per-item log-likelihoods written to {path}")
    return payload


@dataclasses.dataclass(frozen=True)
class Subcommand:
    """One `eval` subcommand: its line in the command list, its description, its examples, the fields of Selection it
    takes and its own settings value (flags beside the shared --ckpt, --device and --json), the help they fill in."""

    run: Callable[[argparse.Namespace], dict[str, Any]]
    summary: str
    description: str
    examples: tuple[str, ...]
    takes: tuple[str, ...] = ("limit",)
    options: type | None = None
    context: dict[str, str] = dataclasses.field(default_factory=lambda: {"each": "", "all": "all"})


SUBCOMMANDS = {
    "loss": Subcommand(
        run_loss, "loss per token and bits per byte of a checkpoint on a text file",
        "Loss per token (nats) and bits per byte of a checkpoint on a UTF-8 text file.",
        ("python -m tinylm.eval loss --ckpt runs/tinystories-cpu --text README.md",
         "python -m tinylm.eval loss --ckpt runs/gpt2 --text README.md --json",
         "python -m tinylm.eval loss --ckpt runs/gpt2 --text README.md --batch-size 4"), (), LossOptions),
    "hellaswag": Subcommand(
        run_hellaswag, "HellaSwag accuracy of a checkpoint with GPT-2's tokens",
        "HellaSwag validation accuracy of a checkpoint with GPT-2's tokens: acc (lowest\n"
        "summed loss), acc_norm (lowest mean loss per token) and acc_norm_char (lowest\n"
        "loss per character), with 95% intervals; chance is 25%. Offline, the mirror's\n"
        "substitute file is scored, and the output says so.",
        ("python -m tinylm.eval hellaswag --ckpt runs/tinystories-cpu --limit 500",
         "python -m tinylm.eval hellaswag --ckpt runs/gpt2 --json",
         "python -m tinylm.eval hellaswag --ckpt runs/gpt2-124m-gpu"), options=HellaSwagOptions,
        context={"each": "", "all": "all 10,042"}),
    "core": Subcommand(
        run_core, "DCLM's CORE score over the mirror's CORE tasks",
        "DCLM's CORE score: each task's accuracy centred by chance, (acc - b)/(1 - b),\n"
        "averaged over the tasks the mirror holds (it says which of the 22 are missing).",
        ("python -m tinylm.eval core --ckpt runs/tinystories-cpu --limit 200",
         "python -m tinylm.eval core --ckpt runs/gpt2 --tasks arc_easy piqa",
         "python -m tinylm.eval core --ckpt runs/gpt2 --json"), ("tasks", "limit"),
        context={"each": " of each task", "all": "all", "tasks": "only these of CORE's tasks (default: all)"}),
    "benchmark": Subcommand(
        run_benchmark, "one benchmark of the mirror",
        "One benchmark: a CORE task, or piqa, lambada, mmlu or gsm8k as released.",
        ("python -m tinylm.eval benchmark lambada --ckpt runs/gpt2",
         "python -m tinylm.eval benchmark mmlu --ckpt runs/gpt2 --limit 500",
         "python -m tinylm.eval benchmark gsm8k --ckpt runs/gpt2 --limit 50"), ("name", "limit", "truncate")),
    "compare": Subcommand(
        run_compare, "two checkpoints on one benchmark, item by item",
        "Two checkpoints on the same items: McNemar's test and the items that changed.",
        ("python -m tinylm.eval compare piqa --ckpt runs/a --ckpt runs/b",
         "python -m tinylm.eval compare copa --ckpt runs/x --ckpt runs/y --json",
         "python -m tinylm.eval compare mmlu --ckpt runs/a --ckpt runs/b"), ("name", "limit", "truncate")),
    "harness": Subcommand(
        run_harness, "EleutherAI's lm-evaluation-harness on a checkpoint",
        "EleutherAI's lm-evaluation-harness (pip install 'tinylm[harness]') on a\n"
        "checkpoint: by default tinylm's local task files over the mirror (arc_easy,\n"
        "arc_challenge, piqa, lambada_openai), with --hub any of the harness's own tasks,\n"
        "whose data it downloads.",
        ("python -m tinylm.eval harness --ckpt runs/gpt2",
         "python -m tinylm.eval harness --ckpt runs/gpt2 --tasks hellaswag --hub",
         "python -m tinylm.eval harness --ckpt runs/a --tasks piqa --limit 200"), ("hub", "tasks", "limit"),
        context={"each": " of each task", "all": "all",
                 "tasks": "the harness's tasks (default: the local ones; with --hub, name them)"}),
}


def parse_args(argv=None) -> argparse.Namespace:
    """The subcommand's arguments, its settings values among them (args.loss, args.hellaswag, args.selection: the
    fields a subcommand does not take keep their defaults)."""
    parser = command_parser("python -m tinylm.eval", __doc__, tuple(SUBCOMMANDS[name].examples[0] for name in
                                                                    ("loss", "hellaswag", "core", "compare")))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, sub in SUBCOMMANDS.items():
        command = add_subcommand(commands, name, sub.summary, sub.description, sub.examples)
        add_ckpt(command, twice=name == "compare")
        if sub.options is not None:
            add_options(command, sub.options, {})
        add_options(command, Selection, sub.context,
                    skip=tuple(f.name for f in dataclasses.fields(Selection) if f.name not in sub.takes))
        if name == "loss":
            add_batch_size(command, 8)
        add_device(command)
        add_json(command)
        command.set_defaults(run=sub.run)
    args = parser.parse_args(argv)
    args.loss, args.hellaswag, args.selection = (options_from(parser, args, kind)
                                                 for kind in (LossOptions, HellaSwagOptions, Selection))
    return args


def main(argv=None):
    args = begin(parse_args(argv))
    return args.run(args)


cli = functools.partial(run_cli, main)  # what `python -m tinylm.eval` runs
