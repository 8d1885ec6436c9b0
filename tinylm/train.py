"""Command line: train a track's model.

    python -m tinylm.train shakespeare-char [--profile smoke|cpu|gpu] [--max-seconds S] [--out DIR] [--resume]

Prepares the data (downloading it, or copying it from $TINYLM_DATA_MIRROR), builds the profile's
recipe, trains with progress printed, and ends with the validation loss over the whole split.
The run folder gets metrics.jsonl (one JSON record per line; the last one holds val_loss),
best.pt and last.pt.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from .checkpoint import CheckpointError, load_checkpoint
from .config import TrainConfig
from .distributed import World, barrier, device_for, init_distributed, teardown
from .logging import print_record, run_cli
from .model import GPT
from .paths import runs_dir
from .runtime import resolve_profile
from .trainer import Trainer
from .tracks import TRACKS, build_model_config, get_track
from .tokenizers import TokenizerUnavailable


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tinylm.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("track", choices=sorted(TRACKS), help="what to train")
    parser.add_argument("--profile", choices=["smoke", "cpu", "gpu"], help="default: $TINYLM_PROFILE, else gpu with CUDA, else cpu")
    parser.add_argument("--max-seconds", type=float, help="wall-clock budget for training (the cosine schedule follows it)")
    parser.add_argument("--max-steps", type=int, help="override the recipe's number of optimizer steps")
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<track>-<profile>)")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    parser.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    parser.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"], help="autocast dtype (default: by hardware)")
    parser.add_argument("--device", help="e.g. cpu, cuda, cuda:1, mps (default: the best available)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--batch-size", type=int, help="sequences per micro-batch on each process (e.g. to resume on fewer GPUs)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the training step")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    world = init_distributed()  # a world of one unless started by torchrun
    finished = False
    try:
        final = _train(args, world)
        finished = True
        return final
    finally:
        teardown(finished)


def _train(args: argparse.Namespace, world: World) -> dict:
    say = print if world.is_main else (lambda *a, **k: None)
    profile = resolve_profile(args.profile)
    track = get_track(args.track)
    model_preset, train_cfg = track.recipe(profile)
    overrides = {"max_seconds": args.max_seconds, "max_steps": args.max_steps, "dtype": args.dtype, "seed": args.seed,
                 "batch_size": args.batch_size, "compile": args.compile}
    train_cfg = dataclasses.replace(train_cfg, **{k: v for k, v in overrides.items() if v is not None})
    out = args.out or runs_dir() / f"{track.name}-{profile}"
    if (out / "last.pt").exists() and not (args.resume or args.overwrite):
        sys.exit(f"{out} already holds a run. Pass --resume to continue it, --overwrite to start afresh "
                 "(its checkpoints will be replaced), or --out to train in another folder.")
    if args.resume and not (out / "last.pt").exists():
        sys.exit(f"--resume: {out} has no last.pt to continue from; drop --resume to start a new run.")
    if args.overwrite and world.is_main:  # one rank deletes; the others wait at the barrier below
        (out / "metrics.jsonl").unlink(missing_ok=True)

    if not world.is_main:
        barrier()  # rank 0 prepares the data first; the others then find it ready
    data = track.prepare(profile)
    if world.is_main:
        barrier()
    model_cfg = build_model_config(model_preset, data.tokenizer, track.vocab_multiple)
    if args.resume:  # the saved run's own recipe wins, so the schedule continues unchanged
        saved = load_checkpoint(out / "last.pt")
        train_cfg = dataclasses.replace(TrainConfig.from_dict(saved["train_config"]),
                                        **{k: v for k, v in overrides.items() if v is not None})
    torch.manual_seed(train_cfg.seed)  # the initial weights, so that a run is repeatable
    model = GPT(model_cfg)
    device = device_for(world, args.device)
    train_data = track.training_data(data, model_cfg.block_size, train_cfg.batch_size, world, train_cfg.seed)
    trainer = Trainer(model, train_cfg, train_data, data.val, out_dir=out, tokenizer=data.tokenizer, device=device,
                      callbacks=[print_record], sample_prompt=track.sample_prompt, world=world,
                      evaluators=_hellaswag_evaluator(track.hellaswag_examples.get(profile, 0), data.tokenizer, say))
    if args.resume:
        trainer.resume(out / "last.pt")
    say(f"{track.name} | profile {profile} | {model.num_parameters():,} parameters | {world.size} process(es) "
        f"| device {trainer.device} | dtype {str(trainer.dtype).removeprefix('torch.')} "
        f"| {train_cfg.batch_size} x {trainer.grad_accum_steps} x {world.size} sequences of {model_cfg.block_size} per step "
        f"| {_count_tokens(train_data):,} train / {len(data.val):,} val tokens | run folder {out}")
    final = trainer.fit()
    say(f"final validation loss (whole split, {len(data.val):,} tokens): {final['val_loss']:.4f}")
    if world.is_main:
        say(trainer.sample(300, temperature=0.8))
    return final


def _count_tokens(train_data) -> int:
    shards = getattr(train_data, "shards", None)
    return sum(len(shard) for shard in shards) if shards is not None else len(train_data)


def _hellaswag_evaluator(limit: int, tokenizer, say) -> dict:
    """HellaSwag accuracy at every evaluation, on the first `limit` validation examples (none if 0)."""
    if limit <= 0:
        return {}
    from .hellaswag import evaluate_hellaswag, locate_val, read_examples

    source = locate_val()
    examples = read_examples(source.path, limit=limit)
    say(f"HellaSwag at each evaluation: {len(examples):,} examples of {source.description}")
    return {"hellaswag": lambda model: {k: v for k, v in evaluate_hellaswag(model, tokenizer, examples).items()
                                        if k in ("acc", "acc_norm", "examples")}}


if __name__ == "__main__":
    run_cli(main, (ValueError, FileNotFoundError, CheckpointError, TokenizerUnavailable))  # ConfigError is a ValueError
