"""Command line: train a track's model.

    python -m tinylm.train shakespeare-char [--profile smoke|cpu|gpu] [--max-seconds S] [--out DIR] [--resume]
        [--learning-rate LR]
    python -m tinylm.train tinystories --arch llama-moe [--balancing none|aux_loss|loss_free]

Prepares the data (downloading it, or copying it from $TINYLM_DATA_MIRROR), builds the profile's
recipe, and trains with progress printed: a header with the planned steps (and the time budget),
a plan with the expected training time once the first steps are measured, and a line every few
steps with the step of the total, loss, learning rate, tokens/s, training time and ETA. It ends
with the validation loss over the whole split and an epilogue: where the run folder is, the best
validation loss, a sample, and the commands to run next. The run folder gets metrics.jsonl (one
JSON record per line; the last one holds val_loss), best.pt and last.pt.

--max-seconds budgets training time only: evaluations, checkpoints and samples are not counted,
so the run takes that long plus their time (the cosine schedule follows the budget).

While a run trains, the folder also holds run.lock (its pid, host and start
time): a second run into the same folder stops with an error that names the first (a lock left by
a killed run is taken over). --overwrite deletes the old run's files before the new run writes any;
--resume and --overwrite exclude each other. Ctrl-C saves last.pt, says how to resume, and exits
with status 130.

--arch builds the recipe's shape as another block family (tinylm.config.ARCHITECTURES): gpt2 (the
default), llama (RMSNorm, RoPE, SwiGLU, grouped-query attention) or llama-moe (with a mixture of
experts, whose --balancing can be chosen). Each gets its own default run folder:
runs/<track>-<profile> for gpt2, runs/<track>-<arch>[-<balancing>]-<profile> otherwise (the balancing
named only when it is not the family's own). --resume rebuilds the model from the checkpoint's own config.

--learning-rate replaces the recipe's peak learning rate and scales its floor (min_lr) by the same
factor, so the schedule keeps its shape. A run whose loss becomes NaN or infinite stops with a
one-line error that names the rate to retry with. --out and --device are checked before the data is
prepared, so a path that runs through a file, or a GPU this machine lacks, fails at once.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import shlex
import time
from pathlib import Path

import torch

from ..config import ARCHITECTURES, BALANCING, GPTConfig, TrainConfig
from ..course.notebooks import next_notebooks
from ..model.gpt import GPT
from ..paths import runs_dir, shown
from ..runtime import resolve_device, resolve_profile
from ..train.checkpoint import load_training_checkpoint
from ..train.distributed import World, barrier, device_for, run_in_world
from ..train.progress import describe_parameters, format_duration, print_record
from ..train.recipes import (
    TRACKS,
    architecture_config,
    architecture_of,
    build_model_config,
    default_run_name,
    get_track,
)
from ..train.runlock import claim_run_folder, clear_old_run
from ..train.trainer import RUN_FILES, Trainer, TrainingDiverged
from .console import HelpFormatter, examples
from .errors import run_cli


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.train", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.train shakespeare-char --profile cpu",
                        "python -m tinylm.train tinystories --arch llama --max-seconds 600",
                        "python -m tinylm.train shakespeare-char --profile cpu --resume --learning-rate 3e-3"))
    parser.add_argument("track", choices=sorted(TRACKS), help="what to train")
    parser.add_argument("--profile", choices=["smoke", "cpu", "gpu"],
                        help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    parser.add_argument("--max-seconds", type=float, help="budget of training time in seconds; evaluations, "
                        "checkpoints and samples come on top (the cosine schedule follows it; default: the recipe's, "
                        "none for most)")
    parser.add_argument("--max-steps", type=int, help="override the recipe's number of optimizer steps "
                        "(default: the recipe's)")
    parser.add_argument("--learning-rate", type=_positive_float, metavar="LR", help="override the recipe's peak "
                        "learning rate; min_lr scales with it (default: the recipe's, or the resumed run's)")
    parser.add_argument("--arch", choices=list(ARCHITECTURES),
                        help="block family (default: gpt2 for a new run, the checkpoint's with --resume)")
    parser.add_argument("--balancing", choices=BALANCING, help="a mixture of experts' load balancing "
                        "(default: the family's own, loss_free for llama-moe)")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<track>-<profile> for gpt2, "
                        "runs/<track>-<arch>-<profile> otherwise)")
    fresh_or_not = parser.add_mutually_exclusive_group()  # both would delete the run's history, then resume it
    fresh_or_not.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    fresh_or_not.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run "
                              "(its checkpoints and metrics are deleted first)")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"],
                        help="autocast dtype (default: the recipe's, auto: by hardware)")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--seed", type=int, help="initial weights, batches and dropout (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch on each process, e.g. to resume on "
                        "fewer GPUs (default: the recipe's)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the training step (default: the recipe's, off)")
    return parser.parse_args(argv)


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def main(argv=None) -> dict:
    args = parse_args(argv)
    return run_in_world(lambda world, held: _train(args, world, held))  # held: the run folder's lock


def _train(args: argparse.Namespace, world: World, held: contextlib.ExitStack) -> dict:
    say = print if world.is_main else (lambda *a, **k: None)
    profile = resolve_profile(args.profile)
    track = get_track(args.track)
    model_preset, train_cfg = track.recipe(profile)
    overrides = {"max_seconds": args.max_seconds, "max_steps": args.max_steps, "dtype": args.dtype, "seed": args.seed,
                 "batch_size": args.batch_size, "compile": args.compile}
    train_cfg = _override(train_cfg, overrides, args.learning_rate)
    if not args.resume:  # a bad --arch/--balancing pair fails before anything else happens
        model_shape = architecture_config(model_preset, args.arch or "gpt2", args.balancing)
    out = args.out or runs_dir() / default_run_name(track.name, profile, args.arch or "gpt2", args.balancing)
    claim_run_folder(out, held, world.is_main, args.resume, args.overwrite, say)
    device = resolve_device(device_for(world, args.device))  # a GPU this machine lacks fails before the data stage
    saved = load_training_checkpoint(out / "last.pt") if args.resume else None
    if saved is not None:
        _check_resumable(GPTConfig.from_dict(saved["model_config"]), args.arch, args.balancing, out)

    if not world.is_main:
        barrier()  # rank 0 prepares the data first; the others then find it ready
    data = track.prepare(profile)
    if world.is_main:
        barrier()
    if saved is None:
        model_cfg = build_model_config(model_shape, data.tokenizer, track.vocab_multiple)
    else:  # the saved run's own model and recipe win, so the same network continues on an unchanged schedule
        if saved.get("tokenizer") != data.tokenizer.to_dict():
            raise ValueError(f"{out / 'last.pt'} was trained with another tokenizer than the {profile} profile of "
                             f"{track.name} uses; resume it with the profile it was trained with (--profile)")
        model_cfg = GPTConfig.from_dict(saved["model_config"])
        train_cfg = _override(TrainConfig.from_dict(saved["train_config"]), overrides, args.learning_rate)
    torch.manual_seed(train_cfg.seed)  # the initial weights, so that a run is repeatable
    model = GPT(model_cfg)
    train_data = track.training_data(data, model_cfg.block_size, train_cfg.batch_size, world, train_cfg.seed)
    trainer = Trainer(model, train_cfg, train_data, data.val, out_dir=out, tokenizer=data.tokenizer, device=device,
                      callbacks=[print_record], sample_prompt=track.sample_prompt, world=world,
                      evaluators=_hellaswag_evaluator(track.hellaswag_examples.get(profile, 0), data.tokenizer, say))
    if saved is not None:
        trainer.load_state_dict(saved)
    say(f"{track.name} | profile {profile} | {_describe(model)} | {world.size} process(es) "
        f"| device {trainer.device} | dtype {str(trainer.dtype).removeprefix('torch.')} "
        f"| {train_cfg.batch_size} x {trainer.grad_accum_steps} x {world.size} sequences of {model_cfg.block_size} "
        f"per step | {_count_tokens(train_data):,} train / {len(data.val):,} val tokens | run folder {shown(out)}")
    say(_plan(trainer))
    if args.overwrite and world.is_main:  # late, so a failed start keeps the old run
        clear_old_run(out, RUN_FILES)
    started = time.perf_counter()
    try:
        final = trainer.fit()
    except TrainingDiverged as error:
        raise TrainingDiverged(_retry_advice(trainer.step, train_cfg.learning_rate, out)) from error
    say(f"final validation loss (whole split, {len(data.val):,} tokens): {final['val_loss']:.4f}")
    if world.is_main:
        say(_epilogue(track, out, trainer, final, time.perf_counter() - started))
    return final


def _plan(trainer: Trainer) -> str:
    """The header's plan: the steps, and the time budget if there is one; the trainer adds the expected time."""
    cfg = trainer.cfg
    line = f"plan: {cfg.max_steps:,} steps" + (f", from step {trainer.step:,}" if trainer.step else "")
    if cfg.max_seconds is not None:
        used = f", {format_duration(trainer.elapsed)} used" if trainer.elapsed else ""
        line += f", or {format_duration(cfg.max_seconds)} of training time if that comes first (--max-seconds{used})"
    return line + "; the expected time follows once the first steps are timed"


def _epilogue(track, out: Path, trainer: Trainer, final: dict, seconds: float) -> str:
    """What a finished run prints last: where its output went, how good it got, a sample, and what to run next."""
    prompt = track.sample_prompt
    sample = trainer.sample(300, temperature=0.8)
    prompt_option = f" --prompt {shlex.quote(prompt)}" if prompt.strip() else ""
    folder = shlex.quote(shown(out))
    next_steps = [
        f"python -m tinylm.sample --ckpt {folder}{prompt_option}   # more text from best.pt, streamed",
        f"python -m tinylm.eval loss --ckpt {folder} --text FILE   # loss and bits per byte on any text",
    ]
    if getattr(trainer.tokenizer, "eot_token", None) is not None:  # a BPE model: it can take HellaSwag
        next_steps.append(f"python -m tinylm.eval hellaswag --ckpt {folder}   # HellaSwag accuracy")
    plot = (f"import matplotlib.pyplot as plt; from tinylm.course.plotting import plot_losses, read_metrics; "
            f"plot_losses(read_metrics({json.dumps(shown(out))})); plt.savefig({json.dumps(shown(out / 'loss.png'))})")
    next_steps += [
        f"python -c {shlex.quote(plot)}   # the loss curves, drawn into loss.png",
        *(f"jupyter lab notebooks/{name}   # from the repository's root" for name in next_notebooks(track.name)),
    ]
    return "\n".join([
        f"done: step {trainer.step:,} of {trainer.cfg.max_steps:,}, {format_duration(trainer.elapsed)} of training "
        f"({format_duration(seconds)} in all this session)",
        f"run folder: {shown(out)} (metrics.jsonl, best.pt, last.pt)",
        f"best validation loss: {final['best_val_loss']:.4f} (best.pt); final: {final['val_loss']:.4f} (last.pt)",
        f"a sample from the final weights (prompt {prompt!r}, 300 tokens, temperature 0.8):",
        "-" * 40, sample, "-" * 40,
        "next:", *(f"  {command}" for command in next_steps),
    ])


def _override(cfg: TrainConfig, overrides: dict, learning_rate: float | None) -> TrainConfig:
    """The recipe (or the resumed run's config) with the options given; a new peak learning rate scales min_lr
    by the same factor, so that the cosine keeps its shape."""
    cfg = dataclasses.replace(cfg, **{k: v for k, v in overrides.items() if v is not None})
    if learning_rate is None:
        return cfg
    return dataclasses.replace(cfg, learning_rate=learning_rate, min_lr=cfg.min_lr * learning_rate / cfg.learning_rate)


def _retry_advice(step: int, learning_rate: float, out: Path) -> str:
    """The one line a diverged run ends with: where, and the command-line change most likely to fix it."""
    lower = f"--learning-rate {learning_rate / 2:.3g}"
    if (out / "last.pt").exists():
        retry = f"continue from its last good checkpoint at a lower peak rate: --resume {lower}"
    else:
        retry = f"no checkpoint was saved yet, so start again at a lower peak rate: {lower}"
    return (f"training diverged at step {step}: the loss became NaN or infinite "
            f"(peak learning rate {learning_rate:.3g}); {retry}")


def _check_resumable(saved: GPTConfig, arch: str | None, balancing: str | None, out: Path) -> None:
    """--resume continues the saved network: an --arch or --balancing that asks for another one is an error."""
    saved_arch = architecture_of(saved) or "a custom architecture"
    if arch is not None and arch != saved_arch:
        raise ValueError(f"--arch {arch}: the run in {out} is {saved_arch}; resume it without --arch "
                         f"(or with --arch {saved_arch}), or train {arch} in another --out folder")
    if balancing is not None and (not saved.n_experts or balancing != saved.balancing):
        what = f"balances its experts with {saved.balancing}" if saved.n_experts else "has no mixture of experts"
        raise ValueError(f"--balancing {balancing}: the run in {out} {what}; resume it without --balancing, "
                         "or train another one in a new --out folder")


def _describe(model: GPT) -> str:
    """Parameter counts for the startup line: a mixture of experts also says how many one token uses."""
    config = model.config
    arch = (architecture_of(config) or "custom") + (f" ({config.balancing} balancing)" if config.n_experts else "")
    return f"{arch} | {describe_parameters(model.num_parameters(), model.num_active_parameters())}"


def _count_tokens(train_data) -> int:
    shards = getattr(train_data, "shards", None)
    return sum(len(shard) for shard in shards) if shards is not None else len(train_data)


def _hellaswag_evaluator(limit: int, tokenizer, say) -> dict:
    """HellaSwag accuracy at every evaluation, on the first `limit` validation examples (none if 0)."""
    if limit <= 0:
        return {}
    from ..eval.hellaswag import evaluate_hellaswag, locate_val, read_examples

    source = locate_val()
    examples = read_examples(source.path, limit=limit)
    say(f"HellaSwag at each evaluation: {len(examples):,} examples of {source.description}")
    return {"hellaswag": lambda model: {k: v for k, v in evaluate_hellaswag(model, tokenizer, examples).items()
                                        if k in ("acc", "acc_norm", "examples")}}


def cli(argv=None) -> None:
    """`python -m tinylm.train`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
