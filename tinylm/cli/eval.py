"""Command line: measure a checkpoint: its loss on a text, a benchmark, or CORE.

`loss` scores a UTF-8 text with the checkpoint's own tokenizer (tinylm.eval.loss.text_loss): nats per token, and
bits per byte, which compare models whose tokenizers differ. `hellaswag` scores HellaSwag's validation set
(tinylm.eval.hellaswag; under torchrun the examples are split over processes). `core`, `task` and `compare` score the
mirror's benchmarks by log-likelihood (tinylm.eval.scoring, tinylm.eval.core) and write JSON beside the run;
`harness` runs EleutherAI's lm-evaluation-harness on the checkpoint (tinylm.eval.harness).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from ..data.text import read_text_file
from ..errors import InputError, MissingFile
from ..eval.loss import text_loss
from ..eval.uncertainty import wilson_interval
from ..paths import write_json
from ..runtime import resolve_device
from ..train.checkpoint import CheckpointError, checkpoint_file, load_model
from .console import add_subcommand, begin, command_parser, positive_int
from .errors import run_cli
from .flags import add_batch_size, add_ckpt, add_device, add_json


def run_loss(args: argparse.Namespace) -> dict[str, Any]:
    ckpt_file = checkpoint_file(args.ckpt)
    text = read_text_file(args.text)  # before loading the model: a wrong path fails fast
    model, tokenizer, state = load_model(ckpt_file, resolve_device(args.device))
    if tokenizer is None:
        raise CheckpointError(f"{ckpt_file} carries no tokenizer, so the text cannot be turned into its ids")
    result = text_loss(model, tokenizer, text, batch_size=args.batch_size)
    if args.json:
        print(json.dumps({"ckpt": str(ckpt_file), "text": str(args.text), **result}))
    else:
        kind = tokenizer.to_dict()["kind"]
        print(f"checkpoint:    {ckpt_file} (step {state.get('step', '?')}, {kind} tokenizer of "
              f"{tokenizer.vocab_size:,}, context {model.config.block_size})")
        print(f"text:          {args.text}")
        print(f"tokens:        {result['tokens']:,} predicted")
        print(f"bytes:         {result['bytes']:,}")
        print(f"loss:          {result['loss']:.4f} nats/token (perplexity {math.exp(result['loss']):.2f})")
        print(f"bits per byte: {result['bits_per_byte']:.4f}")
    return result


def run_hellaswag(args: argparse.Namespace) -> dict[str, Any]:
    from ..distributed import run_in_world

    return run_in_world(lambda world: _hellaswag(args, world))  # under torchrun each rank scores every W-th


def _hellaswag(args: argparse.Namespace, world) -> dict[str, Any]:
    from ..distributed import device_for
    from ..eval.hellaswag import ValFile, check_tokenizer, evaluate_hellaswag, locate_val, read_examples

    ckpt_file = checkpoint_file(args.ckpt)
    device = resolve_device(device_for(world, args.device))
    model, tokenizer, state = load_model(ckpt_file, device)
    check_tokenizer(model, tokenizer)  # before the data is fetched
    if args.data is not None:
        if not args.data.is_file():
            raise MissingFile(f"no HellaSwag file at {args.data}; check the path")
        val = ValFile(args.data, False, "a file given with --data (its contents were not verified)")
    else:
        val = locate_val()
    examples = read_examples(val.path, args.limit)
    result = evaluate_hellaswag(model, tokenizer, examples, device)
    if not world.is_main:
        return result
    if args.json:
        print(json.dumps({"ckpt": str(ckpt_file), "data": str(val.path), "official": val.official,
                          "data_note": val.description, **result}))
    else:
        print(f"checkpoint: {ckpt_file} (step {state.get('step', '?')}, context {model.config.block_size})")
        print(f"data:       {val.path}")
        print(f"            {val.description}")
        print(f"examples:   {result['examples']:,}" + (f" (the first {args.limit:,})" if args.limit else ""))
        for key, count, rule in (("acc", "correct", "lowest summed loss"),
                                 ("acc_norm", "correct_norm", "lowest mean loss per token"),
                                 ("acc_norm_char", "correct_norm_char", "lowest loss per character of the ending")):
            low, high = wilson_interval(result[count], result["examples"])
            share = f"{result[count]:,}/{result['examples']:,}"
            print(f"{key + ':':<15} {result[key]:.4f} [{low:.3f}, {high:.3f}] ({share}; {rule})")
        print("                [95% interval]; chance is 0.25")
    return result


def results_path(ckpt: Path, name: str, limit: int | None) -> Path:
    """Where a benchmark's results go: eval/ in the checkpoint's run folder."""
    folder = ckpt if ckpt.is_dir() else ckpt.parent
    return folder / "eval" / (f"{name}-limit{limit}.json" if limit else f"{name}.json")


def load_for_scoring(ckpt: str, device: str | None):
    ckpt_file = checkpoint_file(ckpt)
    model, tokenizer, state = load_model(ckpt_file, resolve_device(device))
    if tokenizer is None:
        raise CheckpointError(f"{ckpt_file} carries no tokenizer, so no benchmark text can be turned into its ids")
    return ckpt_file, model, tokenizer


def task_bar(name: str):
    from tqdm.auto import tqdm

    return lambda items: tqdm(items, desc=name, unit="item", leave=False)


def task_lines(result) -> list[str]:
    """A task's result: its main accuracy with a 95% Wilson interval, the other metrics, and what did not fit."""
    n, right = len(result.correct), sum(result.correct)
    if n == 0:
        return [f"{result.task:<34} no item fits the model's context ({result.left_out} left out)"]
    low, high = wilson_interval(right, n)
    others = ", ".join(f"{key} {value:.4g}" for key, value in result.metrics.items())
    fit = (f"; {result.fewer_shots} with fewer than {result.shots} shots" if result.fewer_shots else "") + (
        f"; {result.left_out} left out (too long even without shots)" if result.left_out else "")
    return [f"{result.task:<34} {right / n:.3f} [{low:.3f}, {high:.3f}] of {n:,}, chance {result.baseline:.2f}, "
            f"centred {result.centred:+.3f}  ({others}{fit})"]


def run_core(args: argparse.Namespace) -> dict[str, Any]:
    from ..eval.core import evaluate_core

    started = time.perf_counter()
    ckpt_file, model, tokenizer = load_for_scoring(args.ckpt, args.device)
    core = evaluate_core(model, tokenizer, limit=args.limit, tasks=args.tasks, progress=task_bar)
    payload = {"ckpt": str(ckpt_file), "limit": args.limit, **core.to_dict(),
               "seconds": time.perf_counter() - started}
    path = write_json(results_path(Path(args.ckpt), "core", args.limit), payload)
    if args.json:
        print(json.dumps(payload))
        return payload
    print(f"checkpoint: {ckpt_file} (context {model.config.block_size})")
    for result in core.results:
        print(*task_lines(result), sep="\n")
    print(f"CORE {core.score:.4f}: the mean centred accuracy of {len(core.scored)} of 22 tasks" +
          (f", each cut to its first {args.limit:,} items" if args.limit else ""))
    absent = core.missing + [result.task for result in core.results if not result.correct]
    if absent:
        print(f"not in this score: {', '.join(absent)} (so it is not the published 22-task figure)")
    print(f"took {payload['seconds']:.0f} s; results written to {path}")
    return payload


def run_task(args: argparse.Namespace) -> dict[str, Any]:
    from ..eval.benchmarks import named_task
    from ..eval.scoring import evaluate_task

    task = named_task(args.name)
    ckpt_file, model, tokenizer = load_for_scoring(args.ckpt, args.device)
    result = evaluate_task(model, tokenizer, task, limit=args.limit, progress=task_bar(task.name))
    payload = {"ckpt": str(ckpt_file), "source": task.source, "limit": args.limit, **result.to_dict()}
    path = write_json(results_path(Path(args.ckpt), task.name, args.limit), payload)
    if args.json:
        print(json.dumps(payload))
        return payload
    print(f"checkpoint: {ckpt_file} (context {model.config.block_size})")
    print(f"task:       {task.name}: {task.source}; {task.shots} shots")
    print(*task_lines(result), sep="\n")
    print(f"took {result.seconds:.0f} s; results written to {path}")
    return payload


def run_compare(args: argparse.Namespace) -> dict[str, Any]:
    from ..eval.benchmarks import named_task
    from ..eval.core import compare_results
    from ..eval.scoring import evaluate_task

    if len(args.ckpt) != 2:
        raise InputError(f"compare takes two models, --ckpt A --ckpt B; got {len(args.ckpt)}")
    task = named_task(args.task)
    results = []
    for ckpt in args.ckpt:
        _, model, tokenizer = load_for_scoring(ckpt, args.device)
        results.append(evaluate_task(model, tokenizer, task, limit=args.limit, progress=task_bar(Path(ckpt).name)))
    comparison = compare_results(*results)
    test = comparison.test
    payload = {"task": task.name, "ckpt": args.ckpt, "accuracy": [r.accuracy for r in results],
               "gained": comparison.gained, "lost": comparison.lost, "p_value": test.p_value}
    if args.json:
        print(json.dumps(payload))
        return payload
    for ckpt, result in zip(args.ckpt, results):
        print(f"{ckpt}: " + task_lines(result)[0].split(maxsplit=1)[1])
    print(test.describe("A", "B").replace("problems", "items").replace("fail -> pass", "wrong -> right")
          .replace("pass -> fail", "right -> wrong").replace("pass for both", "right for both"))
    print(f"items B gained: {comparison.gained[:20]}{' ...' if len(comparison.gained) > 20 else ''}")
    print(f"items B lost:   {comparison.lost[:20]}{' ...' if len(comparison.lost) > 20 else ''}")
    return payload


def run_harness(args: argparse.Namespace) -> dict[str, Any]:
    from ..eval.harness import LOCAL_TASKS
    from ..eval.harness import run_harness as evaluate

    if args.hub and not args.tasks:
        raise InputError("--hub runs the harness's own tasks: name them, e.g. --tasks hellaswag arc_easy")
    tasks = args.tasks or list(LOCAL_TASKS)
    started = time.perf_counter()
    ckpt_file, model, tokenizer = load_for_scoring(args.ckpt, args.device)
    output = evaluate(model, tokenizer, tasks, limit=args.limit, hub=args.hub)
    items = {task: [{"doc_id": sample["doc_id"], "target": sample["target"],
                     "loglikelihoods": [response[0] for response in sample["filtered_resps"]]}
                    for sample in sorted(samples, key=lambda sample: sample["doc_id"])]
             for task, samples in output["samples"].items()}
    payload = {"ckpt": str(ckpt_file), "tasks": tasks, "limit": args.limit,
               "definitions": "the harness's (hub)" if args.hub else "tinylm's local task files over the mirror",
               "results": output["results"], "items": items, "seconds": time.perf_counter() - started}
    path = write_json(results_path(Path(args.ckpt), "harness-" + "-".join(tasks), args.limit), payload)
    if args.json:
        print(json.dumps(payload))
        return payload
    from lm_eval.utils import make_table

    print(f"checkpoint: {ckpt_file} (context {model.config.block_size}); task definitions: {payload['definitions']}")
    print(make_table(output))
    print(f"took {payload['seconds']:.0f} s; results and per-item log-likelihoods written to {path}")
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    loss_examples = ("python -m tinylm.eval loss --ckpt runs/tinystories-cpu --text README.md",
                     "python -m tinylm.eval loss --ckpt runs/gpt2 --text README.md --json",
                     "python -m tinylm.eval loss --ckpt runs/gpt2 --text README.md --batch-size 4")
    hellaswag_examples = ("python -m tinylm.eval hellaswag --ckpt runs/tinystories-cpu --limit 500",
                          "python -m tinylm.eval hellaswag --ckpt runs/gpt2 --json",
                          "python -m tinylm.eval hellaswag --ckpt runs/gpt2-124m-gpu")
    core_examples = ("python -m tinylm.eval core --ckpt runs/tinystories-cpu --limit 200",
                     "python -m tinylm.eval core --ckpt runs/gpt2 --tasks arc_easy piqa",
                     "python -m tinylm.eval core --ckpt runs/gpt2 --json")
    task_examples = ("python -m tinylm.eval task lambada --ckpt runs/gpt2",
                     "python -m tinylm.eval task mmlu --ckpt runs/gpt2 --limit 500",
                     "python -m tinylm.eval task gsm8k --ckpt runs/gpt2 --limit 50")
    compare_examples = ("python -m tinylm.eval compare --ckpt runs/a --ckpt runs/b --task piqa",
                        "python -m tinylm.eval compare --ckpt runs/x --ckpt runs/y --task copa --json",
                        "python -m tinylm.eval compare --ckpt runs/a --ckpt runs/b --task mmlu")
    harness_examples = ("python -m tinylm.eval harness --ckpt runs/gpt2",
                        "python -m tinylm.eval harness --ckpt runs/gpt2 --tasks hellaswag --hub",
                        "python -m tinylm.eval harness --ckpt runs/a --tasks piqa --limit 200")
    parser = command_parser("python -m tinylm.eval", __doc__, (*loss_examples[:1], hellaswag_examples[0],
                                                               core_examples[0], compare_examples[0]))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    loss = add_subcommand(commands, "loss", "loss per token and bits per byte of a checkpoint on a text file",
                          "Loss per token (nats) and bits per byte of a checkpoint on a UTF-8 text file.",
                          loss_examples)
    hellaswag = add_subcommand(
        commands, "hellaswag", "HellaSwag accuracy of a checkpoint with GPT-2's tokens",
        "HellaSwag validation accuracy of a checkpoint with GPT-2's tokens: acc (lowest\n"
        "summed loss), acc_norm (lowest mean loss per token) and acc_norm_char (lowest\n"
        "loss per character), with 95% intervals; chance is 25%. Offline, the mirror's\n"
        "substitute file is scored, and the output says so.", hellaswag_examples)
    for command in (loss, hellaswag):
        add_ckpt(command)
    loss.add_argument("--text", required=True, type=Path, help="UTF-8 text file to score")
    add_batch_size(loss, 8)
    hellaswag.add_argument("--data", type=Path, metavar="FILE", help="a HellaSwag JSON-lines file to score (default: "
                           "the official validation file, or, offline, the mirror's substitute)")
    core = add_subcommand(
        commands, "core", "DCLM's CORE score over the mirror's CORE tasks",
        "DCLM's CORE score: each task's accuracy centred by chance, (acc - b)/(1 - b),\n"
        "averaged over the tasks the mirror holds (it says which of the 22 are missing).", core_examples)
    task = add_subcommand(commands, "task", "one benchmark of the mirror",
                          "One benchmark: a CORE task, or piqa, lambada, mmlu or gsm8k as released.", task_examples)
    compare = add_subcommand(commands, "compare", "two checkpoints on one benchmark, item by item",
                             "Two checkpoints on the same items: McNemar's test and the items that changed.",
                             compare_examples)
    harness = add_subcommand(
        commands, "harness", "EleutherAI's lm-evaluation-harness on a checkpoint",
        "EleutherAI's lm-evaluation-harness (pip install 'tinylm[harness]') on a\n"
        "checkpoint: by default tinylm's local task files over the mirror (arc_easy,\n"
        "arc_challenge, piqa, lambada_openai), with --hub any of the harness's own tasks,\n"
        "whose data it downloads.", harness_examples)
    add_ckpt(core)
    add_ckpt(task)
    add_ckpt(harness)
    harness.add_argument("--hub", action="store_true", help="the harness's own task definitions and data (online)")
    add_ckpt(compare, twice=True)
    task.add_argument("name", help="arc_easy, piqa, lambada, mmlu, gsm8k, winogrande, ... (any of the mirror's)")
    compare.add_argument("--task", required=True, help="the benchmark, as for task")
    for command, which in ((core, "only these of CORE's tasks (default: all)"),
                           (harness, "the harness's tasks (default: the local ones; with --hub, name them)")):
        command.add_argument("--tasks", nargs="+", metavar="NAME", help=which)
    for command, default in ((hellaswag, "all 10,042"), (core, "all"), (task, "all"), (compare, "all"),
                             (harness, "all")):
        each = " of each task" if command in (core, harness) else ""
        command.add_argument("--limit", type=positive_int, metavar="N",
                             help=f"score only the first N items{each} (default: {default})")
    for command in (loss, hellaswag, core, task, compare, harness):
        add_device(command)
        add_json(command)
    loss.set_defaults(run=run_loss)
    hellaswag.set_defaults(run=run_hellaswag)
    core.set_defaults(run=run_core)
    task.set_defaults(run=run_task)
    compare.set_defaults(run=run_compare)
    harness.set_defaults(run=run_harness)
    return parser.parse_args(argv)


def main(argv=None):
    args = begin(parse_args(argv))
    return args.run(args)


def cli(argv=None) -> None:
    """`python -m tinylm.eval`: main(), its anticipated errors (a bad checkpoint, a missing or unreadable text,
    characters the tokenizer does not know, a text too short, data that cannot be fetched) one line each
    (tinylm.cli.errors)."""
    run_cli(main, argv)

