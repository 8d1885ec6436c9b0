"""Command line: measure speed, and race the laptop speedrun; nothing goes to disk.

A shape is a preset (--preset) built as the block family --arch, with any shape option replacing the preset's
value. Arms that are compared alternate within one run, so that a slow spell of the machine hits them alike; figures
depend on the machine and on what else it runs, so compare within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import subprocess
import sys
import time

import torch

from ..bench.measure import (
    BATCH_SIZES,
    PRESETS,
    compare_checkpointing,
    compare_compiled,
    compare_sharding,
    compare_with_reference,
    measure_bpe_training,
    measure_decoding,
    measure_training,
)
from ..bench.speedrun import RACE_DEFAULTS, RaceRun, race
from ..config import GPTConfig, with_architecture
from ..data.corpora import TINYSTORIES_SAMPLE, default_folder
from ..download import fetch
from ..errors import InputError
from ..eval.uncertainty import compare, spread
from ..model.gpt import GPT
from ..model.kv_cache import bytes_per_token
from ..runtime import dtype_warning, keep_freed_memory, resolve_device, resolve_dtype, resolve_profile
from ..train.checkpoint import load_model
from ..train.memory import memory_account
from ..train.muon import newton_schulz_dtype
from ..train.progress import TRAINING_TIME, cpu_threads_note, describe_parameters, describe_threads, format_duration
from ..train.recipes import get_track
from .console import CommandParser, add_subcommand, begin, command_parser, positive_int
from .errors import run_cli
from .flags import add_arch, add_batch_size, add_ckpt, add_device, add_dtype, add_profile, add_track

UNSTEADY = 1.5  # the slowest block of steps this many times the fastest: the speed was not steady
SHAPE_OPTIONS = ("n_layer", "n_head", "n_embd", "mlp_hidden", "block_size", "vocab_size")


def shape_from_args(args: argparse.Namespace) -> GPTConfig:
    """The preset, with the shape options given, built as --arch; --n-kv-head last (the family's default is half
    of the final n_head)."""
    config = dataclasses.replace(PRESETS[args.preset], **{name: getattr(args, name) for name in SHAPE_OPTIONS
                                                           if getattr(args, name) is not None})
    if args.arch is not None:
        config = with_architecture(config, args.arch)
    return config if args.n_kv_head is None else dataclasses.replace(config, n_kv_head=args.n_kv_head)


def describe_shape(config: GPTConfig) -> str:
    heads = f"{config.n_head} heads" + (f" ({config.kv_heads} key/value)" if config.kv_heads != config.n_head else "")
    mlp = (f"{config.mlp} experts {config.expert_hidden_size} wide ({config.n_experts} routed, "
           f"{config.n_experts_active} active, {config.n_shared_experts} shared)" if config.n_experts
           else f"{config.mlp} MLP {config.mlp_hidden_size} wide")
    return f"{config.n_layer} layers, {heads}, {config.n_embd} wide, {config.norm}, {config.position} positions, {mlp}"


def _cache_size(config: GPTConfig, dtype: torch.dtype) -> str:
    per_token = bytes_per_token(config, dtype)
    return (f"KV cache {per_token:,} bytes per token ({per_token * config.block_size / 2**20:,.1f} MiB for the full "
            f"context of {config.block_size:,}) in {str(dtype).removeprefix('torch.')}")


def _decode(args) -> None:
    device = resolve_device(args.device)
    if args.ckpt:
        model, tokenizer, _ = load_model(args.ckpt, device)
        vocab_limit = None if tokenizer is None else tokenizer.vocab_size
        name = str(args.ckpt)
    else:
        cfg = shape_from_args(args)
        torch.manual_seed(0)
        model, vocab_limit = GPT(cfg).to(device), None
        name = f"random weights, {describe_shape(cfg)}"
    cfg = model.config
    prompt_lengths = args.prompt_tokens or [1]
    too_long = [n for n in prompt_lengths if n >= cfg.block_size]
    if too_long:  # longer prompts are cropped to the context, so they would time something else than asked
        raise InputError(f"--prompt-tokens {' '.join(map(str, too_long))}: a prompt must be shorter than the model's "
                         f"context of {cfg.block_size} tokens; use lengths below {cfg.block_size}")
    dtype = resolve_dtype(device, args.dtype)
    _warn_if_slow(args)
    model.to(dtype)
    parameters = describe_parameters(model.num_parameters(), model.num_active_parameters())
    print(f"{name}: {parameters}, context {cfg.block_size}, vocabulary {cfg.vocab_size}, {_cache_size(cfg, dtype)}")
    print(f"device {device} ({describe_threads(torch.get_num_threads())}), dtype {str(dtype).removeprefix('torch.')}, "
          f"{args.new_tokens} new tokens, batch 1, greedy")
    ids = torch.Generator().manual_seed(0)
    for prompt_tokens in prompt_lengths:
        prompt = torch.randint(vocab_limit or cfg.vocab_size, (1, prompt_tokens), generator=ids).to(device)
        r = measure_decoding(model, prompt, args.new_tokens, vocab_limit)
        print(f"prompt {prompt_tokens:5d} tokens: with cache {r['fast']:8,.1f} tokens/s (fast step; walking the "
              f"modules {r['cache']:,.1f}, {r['fast_speedup']:.2f}x), without {r['no_cache']:8,.1f}, "
              f"speed-up {r['speedup']:4.1f}x, tokens {'identical' if r['identical'] else 'DIFFER'}")


def _warn_if_slow(args) -> None:
    """Measure what was asked for, and say first when it is bf16 where bf16 is slow (`tinylm.runtime.bf16_is_fast`)."""
    device = resolve_device(args.device)
    if warning := dtype_warning(device, resolve_dtype(device, args.dtype)):
        print(warning, file=sys.stderr, flush=True)  # stdout carries the figures


def _train(args) -> None:
    keep_freed_memory()  # as training does: big tensors are reused, not faulted in again every step
    _warn_if_slow(args)
    cfg = shape_from_args(args)
    batch_size = args.batch_size or BATCH_SIZES.get(args.preset, 12)
    if args.reference:
        _train_against_reference(cfg, batch_size, args)
        return
    r = measure_training(cfg, batch_size, steps=args.steps, device=args.device, dtype=args.dtype)
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size}: "
          f"{describe_parameters(r['parameters'], r['active_parameters'])}")
    print(f"device {r['device']} ({describe_threads(r['threads'])}), dtype {r['dtype']}: {r['step_ms']:.1f} ms/step, "
          f"{r['tokens_per_s']:,.0f} training tokens/s, {r['tflops'] * 1e3:.1f} GFLOP/s")
    blocks = r["block_ms"]
    counted = (f"{args.steps} step" + "s" * (args.steps > 1) + f" in {len(blocks)} consecutive block" +
               "s" * (len(blocks) > 1))
    print(f"{counted}, ms/step: {' '.join(f'{ms:.1f}' for ms in blocks)}")
    if max(blocks) > UNSTEADY * min(blocks):
        print(f"the slowest block took more than {UNSTEADY}x the fastest: the speed was not steady (another program, "
              "the CPU's clock), so the mean is less trustworthy; measure again when the machine is quiet")


def _train_against_reference(cfg: GPTConfig, batch_size: int, args) -> None:
    rounds = args.rounds
    r = compare_with_reference(cfg, batch_size, rounds=rounds, device=args.device, dtype=args.dtype)
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size} "
          f"({r['parameters']:,} parameters)")
    print(f"device {r['device']} ({describe_threads(r['threads'])}), dtype {r['dtype']}, one step of each per round, "
          f"best of {rounds} rounds:")
    names = {"tinylm": "tinylm GPT, tinylm.train.optim AdamW", "reference": "reference GPT, nanoGPT's AdamW setup"}
    for name, label in names.items():
        print(f"  {label:38s} {r['tokens_per_s'][name]:9,.0f} tokens/s  {r['step_ms'][name]:8.2f} ms/step")
    print(f"  tinylm / reference: {r['ratio']:.2f}x (median round {r['median_ratio']:.2f}x)")
    tinylm_losses, reference_losses = r["losses"]["tinylm"], r["losses"]["reference"]
    gap = max(abs(a - b) for a, b in zip(tinylm_losses, reference_losses))
    agree = gap <= 1e-4 * max(map(abs, reference_losses))
    print(f"losses of the first {len(tinylm_losses)} steps from the same weights: tinylm "
          f"{' '.join(f'{x:.6f}' for x in tinylm_losses)}, reference {' '.join(f'{x:.6f}' for x in reference_losses)} "
          f"(largest difference {gap:.1e}): {'equal' if agree else 'DIFFERENT'}")


def _compile(args) -> None:
    keep_freed_memory()  # as training does
    _warn_if_slow(args)
    cfg = shape_from_args(args)
    batch_size = args.batch_size or BATCH_SIZES.get(args.preset, 12)
    r = compare_compiled(cfg, batch_size, rounds=args.rounds, device=args.device, dtype=args.dtype)
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size} "
          f"({r['parameters']:,} parameters); device {r['device']} ({describe_threads(r['threads'])}), "
          f"dtype {r['dtype']}")
    eager, compiled = r["losses"]["eager"], r["losses"]["compiled"]
    gap = max(abs(a - b) for a, b in zip(eager, compiled))
    agree = gap <= 1e-4 * max(map(abs, eager))  # float32 rounding in another order, as for train --reference
    print(f"losses of {len(eager)} AdamW steps from the same weights, eager {' '.join(f'{x:.4f}' for x in eager)}; "
          f"compiled {' '.join(f'{x:.4f}' for x in compiled)} (largest difference {gap:.1e}): "
          f"{'equal' if agree else 'DIFFERENT'}")
    first_step = r["first_step_s"]["compiled"]
    print(f"compiling took about {r['compile_s']:.1f} s (the compiled first step, {first_step:.1f} s, less a compiled "
          "step)")
    for name, values in r["round_ms"].items():
        print(f"  {name:<9} {spread(values).format(1, replicate='round')} ms per step (median step of each round)")
    print(compare("compiled", r["round_ms"]["compiled"], "eager", r["round_ms"]["eager"], metric="ms per step",
                  digits=1, replicate="round"))


def _memory(args) -> None:
    """The memory account of a step, and activation checkpointing's memory saved and time paid, measured."""
    keep_freed_memory()  # as training does
    _warn_if_slow(args)
    cfg = shape_from_args(args)
    batch_size = args.batch_size or BATCH_SIZES.get(args.preset, 12)
    device = resolve_device(args.device)
    dtype = resolve_dtype(device, args.dtype)
    parameters = sum(p.numel() for p in GPT(cfg).parameters()) if args.account_only else None
    if args.account_only:
        print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size} "
              f"({parameters:,} parameters); {device.type}, {str(dtype).removeprefix('torch.')}")
    else:
        r = compare_checkpointing(cfg, batch_size, rounds=args.rounds, device=args.device, dtype=args.dtype)
        parameters = r["parameters"]
        print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size} "
              f"({parameters:,} parameters); device {r['device']} ({describe_threads(r['threads'])}), "
              f"dtype {r['dtype']}")
    accounts = {name: memory_account(cfg, parameters, batch_size, dtype, name == "checkpointed", device.type)
                for name in ("plain", "checkpointed")}
    print(f"{'MB':>36} {'plain':>10} {'checkpointed':>13}")
    rows = dict(accounts["plain"].rows())
    rows.update({what: rows.get(what, 0) for what, _ in accounts["checkpointed"].rows()})
    checkpointed = dict(accounts["checkpointed"].rows())
    for what, held in rows.items():
        print(f"{what:>36} {held / 1e6:10.1f} {checkpointed.get(what, 0) / 1e6:13.1f}")
    print(f"{'peak, by the account':>36} {accounts['plain'].peak / 1e6:10.1f} "
          f"{accounts['checkpointed'].peak / 1e6:13.1f}")
    if args.account_only:
        return
    source = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "the profiler's peak of live tensors"
    measured = r["measured"]
    print(f"{'peak, measured':>36} {measured['plain'] / 1e6:10.1f} {measured['checkpointed'] / 1e6:13.1f}")
    print(f"measured: {source}, the second step; checkpointing saves "
          f"{1 - measured['checkpointed'] / measured['plain']:.0%} of the peak")
    losses = r["losses"]
    gap = max(abs(a - b) for a, b in zip(losses["plain"], losses["checkpointed"]))
    print(f"losses of 3 steps, plain {' '.join(f'{x:.5f}' for x in losses['plain'])}; checkpointed "
          f"{' '.join(f'{x:.5f}' for x in losses['checkpointed'])} (largest difference {gap:.1e})")
    for name, values in r["round_ms"].items():
        print(f"  {name:<12} {spread(values).format(1, replicate='round')} ms per step")
    print(compare("checkpointed", r["round_ms"]["checkpointed"], "plain", r["round_ms"]["plain"],
                  metric="ms per step", digits=1, replicate="round"))


def _sharding(args) -> None:
    """DDP, ZeRO-1 and FSDP2 under torchrun: ms per step and what each rank holds."""
    from ..distributed import run_in_world

    if "RANK" not in os.environ:  # start the processes: this command again, under torchrun
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={args.processes}", "-m", "tinylm.bench", *sys.argv[1:]]
        if subprocess.run(launcher).returncode:
            raise InputError("a process of bench sharding failed: its own lines above say why")
        return
    keep_freed_memory()
    cfg = shape_from_args(args)
    batch_size = args.batch_size or BATCH_SIZES.get(args.preset, 12)
    r = run_in_world(lambda world: compare_sharding(cfg, batch_size, rounds=args.rounds, device=args.device,
                                                    dtype=args.dtype))
    if int(os.environ["RANK"]) != 0:
        return
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size} per process, vocab "
          f"{cfg.vocab_size}; {r['processes']} processes on {r['device']} ({describe_threads(torch.get_num_threads())}"
          f" each), dtype {r['dtype']}")
    print(f"{'MB held by rank 0':>20} {'weights':>9} {'gradients':>10} {'optimizer':>10}   ms per step")
    for name, label in (("ddp", "DDP"), ("zero", "ZeRO-1"), ("fsdp", "FSDP2")):
        held = r["held"][name]
        print(f"{label:>20} {held['weights'] / 1e6:9.2f} {held['gradients'] / 1e6:10.2f} "
              f"{held['optimizer'] / 1e6:10.2f}   {spread(r['round_ms'][name]).format(1, replicate='round')}")
    losses = r["losses"]
    gap = max(abs(a - b) for name in ("zero", "fsdp") for a, b in zip(losses[name], losses["ddp"]))
    print(f"losses of {len(losses['ddp'])} steps from the same weights: " + "; ".join(
        f"{label} {' '.join(f'{x:.5f}' for x in losses[name])}" for name, label in
        (("ddp", "DDP"), ("zero", "ZeRO-1"), ("fsdp", "FSDP2"))) + f" (largest difference {gap:.1e})")
    print(compare("FSDP2", r["round_ms"]["fsdp"], "DDP", r["round_ms"]["ddp"], metric="ms per step", digits=1,
                  replicate="round"))


def _bpe(args) -> None:
    path = fetch(TINYSTORIES_SAMPLE, default_folder("tinystories", "sample") / "sample.txt")
    text = path.read_text(encoding="utf-8")
    print(f"{path}: {len(text):,} characters; {args.merges} merges, best of {args.repeats} runs of each trainer "
          f"(pre-tokenising included)")
    r = measure_bpe_training(text, args.merges, args.repeats)
    print(f"recount every pair (train_bpe): {r['recount_s']:.2f} s; incremental (train_bpe_incremental): "
          f"{r['incremental_s']:.2f} s; speed-up {r['speedup']:.1f}x; "
          f"{r['merges']} merges, {'identical' if r['identical'] else 'DIFFERENT'}")


def _cache(args) -> None:
    cfg = shape_from_args(args)
    dtype = resolve_dtype(resolve_device(args.device), "auto") if args.dtype == "auto" else getattr(torch, args.dtype)
    print(f"shape: {describe_shape(cfg)}, head size {cfg.head_size}")
    print(f"{_cache_size(cfg, dtype)}: 2 (keys and values) x {cfg.n_layer} layers x {cfg.kv_heads} heads x "
          f"{cfg.head_size} x {dtype.itemsize} bytes")


def _speedrun(args) -> None:
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise InputError(f"--seconds must be positive, got {args.seconds}")
    if args.target is not None and not (math.isfinite(args.target) and args.target > 0):
        raise InputError(f"--target must be a positive validation loss, got {args.target}; shakespeare-char's "
                         f"default is {RACE_DEFAULTS['shakespeare-char']['target']}")
    defaults = RACE_DEFAULTS[args.track]
    target = args.target if args.target is not None else defaults["target"]
    seconds = args.seconds if args.seconds is not None else defaults["seconds"]
    eval_interval = args.eval_interval if args.eval_interval is not None else defaults["eval_interval"]
    # The speedrun recipes exist for the cpu and smoke profiles: on a machine with CUDA too, the default races cpu's.
    profile = resolve_profile(args.profile, default="cpu")
    track = get_track(args.track)
    if profile not in track.speedruns:
        raise InputError(f"{args.track} has speedrun recipes for the {' and '.join(track.speedruns)} profiles, not "
                         f"for {profile}: add --profile cpu")
    seeds = list(range(args.seeds))
    total = 2 * len(seeds)
    device = resolve_device(args.device)
    print(f"{args.track}: default recipe against speedrun recipe, {format_duration(seconds)} of training each, "
          f"seeds {', '.join(map(str, seeds))} (alternating order), target validation loss {target}, device "
          f"{device}{cpu_threads_note(device)}; {total} runs, about {format_duration(total * seconds * 1.15)} with "
          "evaluations")
    print(f"({TRAINING_TIME}; `python -m tinylm.train {args.track} --max-seconds {seconds:g}` counts the same)")
    changes = track.speedrun_changes(profile)
    print(f"the speedrun recipe: the default one with {', '.join(f'{name}={value}' for name, value in changes.items())}"
          f" (Muon's Newton–Schulz in {str(newton_schulz_dtype(device)).removeprefix('torch.')} on this {device.type})")
    started = time.perf_counter()

    def report(run: RaceRun, done: int, total: int) -> None:
        reached = "not reached" if run.seconds_to_target is None else f"{run.seconds_to_target:5.1f} s"
        left = (time.perf_counter() - started) / done * (total - done)
        print(f"  run {done}/{total}: {run.recipe:<8} seed {run.seed}: {run.steps:>6,} steps, val loss "
              f"{run.val_loss:.4f}, target {reached}  (ETA {format_duration(left)})", flush=True)

    runs = race(args.track, profile, seeds=seeds, seconds=seconds, target=target, eval_interval=eval_interval,
                device=device, on_run=report)
    print(f"after {format_duration(seconds)} of training each (mean ± half the range over seeds; seconds are "
          "training time, as above):")
    for name, recipe_runs in runs.items():
        reached = [run.seconds_to_target for run in recipe_runs if run.seconds_to_target is not None]
        to_target = (f"seconds to {target}: {spread(reached).format(1)}" if len(reached) == len(recipe_runs)
                     else f"{len(reached)} of {len(recipe_runs)} seeds reached {target}")
        print(f"  {name:<8} val loss {spread([run.val_loss for run in recipe_runs]).format(4)}; {to_target}")
    default, speedrun = (spread([run.val_loss for run in runs[name]]) for name in ("default", "speedrun"))
    print(f"speedrun - default, val loss: {speedrun.mean - default.mean:+.4f}")
    times = {name: [run.seconds_to_target for run in recipe_runs] for name, recipe_runs in runs.items()}
    if all(t is not None for values in times.values() for t in values):
        ratio = spread(times["default"]).mean / spread(times["speedrun"]).mean
        verdict = f"{ratio:.2f}x as fast" if ratio >= 1 else f"in {1 / ratio:.2f}x the time of the default recipe"
        print(f"seconds to {target}: the speedrun recipe gets there {verdict}")
    print("nothing was written to disk; to train the speedrun recipe into a run folder: "
          f"python -m tinylm.train {args.track} --recipe speedrun --profile {profile}")


COMMANDS = {"train": _train, "compile": _compile, "memory": _memory, "sharding": _sharding, "decode": _decode,
            "cache": _cache, "bpe": _bpe,
            "speedrun": _speedrun}


MODES = {  # mode -> (its line in the list of modes, its --help description within 80 columns, examples)
    "train": ("training throughput: tokens/s and FLOP/s of full optimizer steps",
              "Times full optimizer steps (forward, backward, AdamW) on random tokens:\n"
              "tokens/s, FLOP/s, the ms per step of consecutive blocks (a note when they vary).\n"
              "--reference races a plain GPT-2 with nanoGPT's AdamW from the same weights.",
              ("python -m tinylm.bench train --arch llama --batch-size 12",
               "python -m tinylm.bench train --preset tinystories-cpu --reference --rounds 20",
               "python -m tinylm.bench train --n-layer 1 --block-size 64 --dtype bfloat16")),
    "compile": ("eager against torch.compile, from the same weights",
                "Trains the shape eager and under torch.compile from the same weights on the\n"
                "same batches: both arms' losses (they must agree), the compile time, and the ms\n"
                "per step over interleaved rounds, with a verdict. A CPU needs a C++ compiler.",
                ("python -m tinylm.bench compile --preset gpt2-smoke --batch-size 16",
                 "python -m tinylm.bench compile --preset tinystories-cpu --rounds 3",
                 "python -m tinylm.bench compile --preset gpt2-124m --device cuda --rounds 10")),
    "memory": ("a step's memory by what holds it; activation checkpointing's cost",
               "Prints the memory account of one training step (parameters, gradients, AdamW,\n"
               "activations per block, logits), plain and with activation checkpointing, then\n"
               "measures both arms' peak and ms per step over interleaved rounds.",
               ("python -m tinylm.bench memory --preset tinystories-cpu",
                "python -m tinylm.bench memory --preset gpt2-124m --account-only",
                "python -m tinylm.bench memory --preset gpt2-124m --device cuda --rounds 10")),
    "sharding": ("DDP, ZeRO-1 and FSDP2 in N processes: step time, memory per rank",
                 "Starts --processes processes (torchrun's) that train the shape with DDP, ZeRO-1\n"
                 "(AdamW's moments sharded) and FSDP2 (everything sharded) from the same weights:\n"
                 "what rank 0 holds after a step, and the ms per step of interleaved rounds.",
                 ("python -m tinylm.bench sharding",
                  "python -m tinylm.bench sharding --preset tinystories-cpu --rounds 10",
                  "python -m tinylm.bench sharding --processes 1 --device cuda --preset gpt2-124m")),
    "decode": ("greedy decoding with the KV cache and without it",
               "Decodes greedily from a random prompt along three paths, alternating: the KV\n"
               "cache through the fast step that generate uses, the cache walking the modules,\n"
               "and no cache: the best new tokens/s of each, and whether the tokens agree.",
               ("python -m tinylm.bench decode --preset stories15m --new-tokens 255",
                "python -m tinylm.bench decode --ckpt runs/shakespeare-char-cpu --dtype float32",
                "python -m tinylm.bench decode --preset stories15m --prompt-tokens 1 200")),
    "cache": ("the KV cache's bytes per token, without building the model",
              "Prints the KV cache's bytes per token and for a full context (2 x layers x\n"
              "key/value heads x head size x bytes per number), without building the model.",
              ("python -m tinylm.bench cache --preset gpt2-124m",
               "python -m tinylm.bench cache --preset gpt2-124m --n-kv-head 4 --dtype bfloat16",
               "python -m tinylm.bench cache --preset gpt2-124m --block-size 4096")),
    "bpe": ("BPE training: the readable trainer against the incremental one",
            "Learns --merges merges on the TinyStories sample with the readable trainer\n"
            "(every pair recounted after each merge) and the incremental one, alternating:\n"
            "the best of --repeats runs of each, and whether their merges are identical.",
            ("python -m tinylm.bench bpe",
             "python -m tinylm.bench bpe --merges 500",
             "python -m tinylm.bench bpe --merges 2000 --repeats 1")),
    "speedrun": ("the laptop speedrun: default recipe against speedrun recipe",
                 "Trains the track's default and speedrun recipes (train TRACK --recipe speedrun)\n"
                 "for --seconds of training at each seed, alternating which goes first, scoring\n"
                 "the whole validation split every --eval-interval steps: per recipe the seconds\n"
                 "to --target and the loss at the end (mean +- half the range over seeds).",
                 ("python -m tinylm.bench speedrun --track shakespeare-char --seeds 3",
                  "python -m tinylm.bench speedrun --track tinystories --eval-interval 50",
                  "python -m tinylm.bench speedrun --seconds 30 --target 2.0")),
}


def _shape_options() -> argparse.ArgumentParser:
    """The options of the modes that build a model: a preset, a block family and shape options."""
    options = CommandParser(add_help=False)
    options.add_argument("--preset", choices=list(PRESETS), default="nanogpt-cpu", metavar="P",
                         help=f"the shape: {', '.join(list(PRESETS)[:-1])} or {list(PRESETS)[-1]}")
    add_arch(options, "the preset's own")
    names = [f"--{name.replace('_', '-')}" for name in (*SHAPE_OPTIONS, "n_kv_head")]
    shape = options.add_argument_group("shape options", f"{', '.join(names[:5])},\n{', '.join(names[5:])} N: "
                                                        "each replaces the preset's value")
    for name in names:
        shape.add_argument(name, type=positive_int, help=argparse.SUPPRESS)
    return options


def _add_rounds(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    parser.add_argument("--rounds", type=positive_int, default=default, metavar="N", help=what)


def _device_options(dtype: str = "auto") -> argparse.ArgumentParser:
    options = CommandParser(add_help=False)
    add_device(options)
    add_dtype(options, dtype)
    return options


def parse_args(argv=None) -> argparse.Namespace:
    firsts = {"train": 1, "compile": 0, "decode": 0, "cache": 1, "speedrun": 0}  # which of each mode's examples
    parser = command_parser("python -m tinylm.bench", __doc__, tuple(MODES[name][2][i] for name, i in firsts.items()))
    modes = parser.add_subparsers(dest="what", required=True, metavar="MODE",
                                  help="what to measure; python -m tinylm.bench MODE --help says how")
    shape, device = _shape_options(), _device_options()

    def mode(name: str, parents: tuple = ()) -> argparse.ArgumentParser:
        return add_subcommand(modes, name, *MODES[name], parents)

    batch = "the preset's recipe's; 12 where it has none"
    train = mode("train", (shape, device))
    add_batch_size(train, default_text=batch)
    train.add_argument("--steps", type=positive_int, default=50, metavar="N", help="optimizer steps to time")
    train.add_argument("--reference", action="store_true", help="race a plain GPT-2 of the same shape")
    _add_rounds(train, 30, "with --reference: interleaved rounds")
    compiled = mode("compile", (shape, device))
    add_batch_size(compiled, default_text=batch)
    _add_rounds(compiled, 6, "interleaved rounds")
    memory = mode("memory", (shape, device))
    add_batch_size(memory, default_text=batch)
    _add_rounds(memory, 5, "interleaved rounds")
    memory.add_argument("--account-only", action="store_true", help="print the account; measure nothing")
    sharding = mode("sharding", (shape, device))
    add_batch_size(sharding, default_text=batch)
    _add_rounds(sharding, 5, "interleaved rounds")
    sharding.add_argument("--processes", type=positive_int, default=2, metavar="N", help="how many to start")
    decode = mode("decode", (shape, device))
    add_ckpt(decode, default="random weights of the shape")
    decode.add_argument("--new-tokens", type=positive_int, default=500, metavar="N", help="tokens to generate")
    decode.add_argument("--prompt-tokens", type=positive_int, nargs="+", metavar="N", help="prompt lengths, one run "
                        "each, shorter than the context (default: 1)")
    mode("cache", (shape, _device_options("bfloat16")))
    bpe = mode("bpe")
    bpe.add_argument("--merges", type=positive_int, default=500, metavar="N", help="merges to learn")
    bpe.add_argument("--repeats", type=positive_int, default=3, metavar="N", help="runs of each trainer")
    speedrun = mode("speedrun")
    add_track(speedrun, list(RACE_DEFAULTS), default="shakespeare-char")
    add_profile(speedrun, default="$TINYLM_PROFILE, else cpu")
    speedrun.add_argument("--target", type=float, metavar="LOSS", help="the validation loss to reach (default: "
                          "1.886 for shakespeare-char, near the 1.88 nanoGPT's README reports; else the track's)")
    speedrun.add_argument("--seeds", type=positive_int, default=3, metavar="N", help="seeds per recipe")
    speedrun.add_argument("--seconds", type=float, metavar="S", help="seconds of training per run (default: 70 for "
                          "shakespeare-char, 300 for tinystories)")
    speedrun.add_argument("--eval-interval", type=positive_int, metavar="N", help="steps between whole-split "
                          "evaluations (default: the track's)")
    add_device(speedrun)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = begin(parse_args(argv), thread_note=True)
    COMMANDS[args.what](args)


def cli(argv=None) -> None:
    """`python -m tinylm.bench`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)

