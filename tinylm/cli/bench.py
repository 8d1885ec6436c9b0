"""Command line: measure speed, and race the laptop speedrun; nothing goes to disk.

A shape is a preset (--preset) built as the block family --arch, with any shape option replacing the preset's
value. Arms that are compared alternate within one run, so that a slow spell of the machine hits them alike; figures
depend on the machine and on what else it runs, so compare within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import os
import subprocess
import sys
import time

import torch

from ..bench.measure import (
    ROUNDS,
    SHAPE_FIELDS,
    BPETiming,
    Decoding,
    ModelSpec,
    Timing,
    compare_checkpointing,
    compare_compiled,
    compare_sharding,
    compare_with_reference,
    measure_bpe_training,
    measure_decoding,
    measure_training,
)
from ..bench.speedrun import RACE_DEFAULTS, Race, RaceRun, compared, race
from ..config import GPTConfig
from ..data.corpora import TINYSTORIES_SAMPLE, default_folder
from ..distributed import run_in_world
from ..download import fetch
from ..errors import InputError
from ..eval.uncertainty import UNSTEADY, compare, same_steps, spread, steady
from ..model.gpt import GPT
from ..model.kv_cache import bytes_per_token
from ..runtime import keep_freed_memory, resolve_device, resolve_dtype
from ..train.checkpoint import load_model
from ..train.memory import memory_account
from ..train.muon import newton_schulz_dtype
from ..train.progress import TRAINING_TIME, cpu_threads_note, describe_parameters, describe_threads, format_duration
from ..train.recipes import get_track
from .console import CommandParser, add_subcommand, begin, command_parser, warn_if_slow
from .errors import run_cli
from .options import add_options, options_from


def describe_shape(config: GPTConfig) -> str:
    heads = f"{config.n_head} heads" + (f" ({config.kv_heads} key/value)" if config.kv_heads != config.n_head else "")
    mlp = (f"{config.mlp} experts {config.expert_hidden_size} wide ({config.n_experts} routed, "
           f"{config.n_experts_active} active, {config.n_shared_experts} shared)" if config.n_experts
           else f"{config.mlp} MLP {config.mlp_hidden_size} wide")
    return f"{config.n_layer} layers, {heads}, {config.n_embd} wide, {config.norm}, {config.position} positions, {mlp}"


def _shape(cfg: GPTConfig, batch: int | str) -> str:
    """The shape's line; `batch`: its size, or what it says ("8 per process")."""
    return f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch}, vocab {cfg.vocab_size}"


def _ran_on(result: dict) -> str:
    return f"device {result['device']} ({describe_threads(result['threads'])}), dtype {result['dtype']}"


def _cache_size(config: GPTConfig, dtype: torch.dtype) -> str:
    per_token = bytes_per_token(config, dtype)
    return (f"KV cache {per_token:,} bytes per token ({per_token * config.block_size / 2**20:,.1f} MiB for the full "
            f"context of {config.block_size:,}) in {str(dtype).removeprefix('torch.')}")


def _decode(spec: ModelSpec, decoding: Decoding) -> None:
    device = resolve_device(spec.device)
    if decoding.ckpt:
        model, tokenizer, _ = load_model(decoding.ckpt, device)
        vocab_limit = None if tokenizer is None else tokenizer.vocab_size
        name = str(decoding.ckpt)
    else:
        torch.manual_seed(0)
        model, vocab_limit = GPT(spec.config()).to(device), None
        name = f"random weights, {describe_shape(model.config)}"
    cfg = model.config
    prompt_lengths = decoding.prompt_tokens or [1]
    too_long = [n for n in prompt_lengths if n >= cfg.block_size]
    if too_long:  # longer prompts are cropped to the context, so they would time something else than asked
        raise InputError(f"--prompt-tokens {' '.join(map(str, too_long))}: a prompt must be shorter than the model's "
                         f"context of {cfg.block_size} tokens; use lengths below {cfg.block_size}")
    dtype = resolve_dtype(device, spec.dtype)
    warn_if_slow(device, dtype)
    model.to(dtype)
    parameters = describe_parameters(model.num_parameters(), model.num_active_parameters())
    print(f"{name}: {parameters}, context {cfg.block_size}, vocabulary {cfg.vocab_size}, {_cache_size(cfg, dtype)}")
    print(f"device {device} ({describe_threads(torch.get_num_threads())}), dtype {str(dtype).removeprefix('torch.')}, "
          f"{decoding.new_tokens} new tokens, batch 1, greedy")
    ids = torch.Generator().manual_seed(0)
    for prompt_tokens in prompt_lengths:
        prompt = torch.randint(vocab_limit or cfg.vocab_size, (1, prompt_tokens), generator=ids).to(device)
        r = measure_decoding(model, prompt, decoding.new_tokens, vocab_limit)
        print(f"prompt {prompt_tokens:5d} tokens: with cache {r['fast']:8,.1f} tokens/s (fast step; walking the "
              f"modules {r['cache']:,.1f}, {r['fast_speedup']:.2f}x), without {r['no_cache']:8,.1f}, "
              f"speed-up {r['speedup']:4.1f}x, tokens {'identical' if r['identical'] else 'DIFFER'}")


def _training_shape(spec: ModelSpec, timing: Timing) -> tuple[GPTConfig, int]:
    """(shape, batch size) of a mode that trains, with training's memory setting and the slow-dtype note first: it
    measures what was asked for."""
    keep_freed_memory()  # as training does: big tensors are reused, not faulted in again every step
    device = resolve_device(spec.device)
    warn_if_slow(device, resolve_dtype(device, spec.dtype))
    return spec.config(), timing.batch(spec.preset)


def _train(spec: ModelSpec, timing: Timing) -> None:
    cfg, batch_size = _training_shape(spec, timing)
    if timing.reference:
        _train_against_reference(cfg, batch_size, spec, timing.rounds)
        return
    r = measure_training(cfg, batch_size, steps=timing.steps, device=spec.device, dtype=spec.dtype)
    print(f"{_shape(cfg, batch_size)}: {describe_parameters(r['parameters'], r['active_parameters'])}")
    print(f"{_ran_on(r)}: {r['step_ms']:.1f} ms/step, "
          f"{r['tokens_per_s']:,.0f} training tokens/s, {r['tflops'] * 1e3:.1f} GFLOP/s")
    blocks = r["block_ms"]
    counted = (f"{timing.steps} step" + "s" * (timing.steps > 1) + f" in {len(blocks)} consecutive block" +
               "s" * (len(blocks) > 1))
    print(f"{counted}, ms/step: {' '.join(f'{ms:.1f}' for ms in blocks)}")
    if not steady(blocks):
        print(f"the slowest block took more than {UNSTEADY}x the fastest: the speed was not steady (another program, "
              "the CPU's clock), so the mean is less trustworthy; measure again when the machine is quiet")


def _train_against_reference(cfg: GPTConfig, batch_size: int, spec: ModelSpec, rounds: int) -> None:
    r = compare_with_reference(cfg, batch_size, rounds=rounds, device=spec.device, dtype=spec.dtype)
    print(f"{_shape(cfg, batch_size)} ({r['parameters']:,} parameters)")
    print(f"{_ran_on(r)}, one step of each per round, best of {rounds} rounds:")
    names = {"tinylm": "tinylm GPT, tinylm.train.optim AdamW", "reference": "reference GPT, nanoGPT's AdamW setup"}
    for name, label in names.items():
        print(f"  {label:38s} {r['tokens_per_s'][name]:9,.0f} tokens/s  {r['step_ms'][name]:8.2f} ms/step")
    print(f"  tinylm / reference: {r['ratio']:.2f}x (median round {r['median_ratio']:.2f}x)")
    tinylm_losses, reference_losses = r["losses"]["tinylm"], r["losses"]["reference"]
    gap, agree = same_steps(tinylm_losses, reference_losses)
    print(f"losses of the first {len(tinylm_losses)} steps from the same weights: tinylm "
          f"{' '.join(f'{x:.6f}' for x in tinylm_losses)}, reference {' '.join(f'{x:.6f}' for x in reference_losses)} "
          f"(largest difference {gap:.1e}): {'equal' if agree else 'DIFFERENT'}")


def _compile(spec: ModelSpec, timing: Timing) -> None:
    cfg, batch_size = _training_shape(spec, timing)
    r = compare_compiled(cfg, batch_size, rounds=timing.rounds, device=spec.device, dtype=spec.dtype)
    print(f"{_shape(cfg, batch_size)} ({r['parameters']:,} parameters); {_ran_on(r)}")
    eager, compiled = r["losses"]["eager"], r["losses"]["compiled"]
    gap, agree = same_steps(compiled, eager)
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


def _memory(spec: ModelSpec, timing: Timing) -> None:
    """The memory account of a step, and activation checkpointing's memory saved and time paid, measured."""
    cfg, batch_size = _training_shape(spec, timing)
    device = resolve_device(spec.device)
    dtype = resolve_dtype(device, spec.dtype)
    if timing.account_only:
        parameters = GPT(cfg).num_parameters()
        print(f"{_shape(cfg, batch_size)} ({parameters:,} parameters); {device.type}, "
              f"{str(dtype).removeprefix('torch.')}")
    else:
        r = compare_checkpointing(cfg, batch_size, rounds=timing.rounds, device=spec.device, dtype=spec.dtype)
        parameters = r["parameters"]
        print(f"{_shape(cfg, batch_size)} ({parameters:,} parameters); {_ran_on(r)}")
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
    if timing.account_only:
        return
    source = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "the profiler's peak of live tensors"
    measured = r["measured"]
    print(f"{'peak, measured':>36} {measured['plain'] / 1e6:10.1f} {measured['checkpointed'] / 1e6:13.1f}")
    print(f"measured: {source}, the second step; checkpointing saves "
          f"{1 - measured['checkpointed'] / measured['plain']:.0%} of the peak")
    losses = r["losses"]
    gap, _ = same_steps(losses["checkpointed"], losses["plain"])
    print(f"losses of 3 steps, plain {' '.join(f'{x:.5f}' for x in losses['plain'])}; checkpointed "
          f"{' '.join(f'{x:.5f}' for x in losses['checkpointed'])} (largest difference {gap:.1e})")
    for name, values in r["round_ms"].items():
        print(f"  {name:<12} {spread(values).format(1, replicate='round')} ms per step")
    print(compare("checkpointed", r["round_ms"]["checkpointed"], "plain", r["round_ms"]["plain"],
                  metric="ms per step", digits=1, replicate="round"))


def _sharding(spec: ModelSpec, timing: Timing) -> None:
    """DDP, ZeRO-1 and FSDP2 under torchrun: ms per step and what each rank holds."""
    if "RANK" not in os.environ:  # start the processes: this command again, under torchrun
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={timing.processes}", "-m", "tinylm.bench", *sys.argv[1:]]
        if subprocess.run(launcher).returncode:
            raise InputError("a process of bench sharding failed: its own lines above say why")
        return
    keep_freed_memory()
    cfg, batch_size = spec.config(), timing.batch(spec.preset)
    r = run_in_world(lambda world: compare_sharding(cfg, batch_size, rounds=timing.rounds, device=spec.device,
                                                    dtype=spec.dtype))
    if int(os.environ["RANK"]) != 0:
        return
    print(f"{_shape(cfg, f'{batch_size} per process')}; {r['processes']} processes on {r['device']} "
          f"({describe_threads(torch.get_num_threads())} each), dtype {r['dtype']}")
    print(f"{'MB held by rank 0':>20} {'weights':>9} {'gradients':>10} {'optimizer':>10} {'step peak':>10}   "
          "ms per step")
    for name, label in (("ddp", "DDP"), ("zero", "ZeRO-1"), ("fsdp", "FSDP2")):
        held = r["held"][name]
        print(f"{label:>20} {held['weights'] / 1e6:9.2f} {held['gradients'] / 1e6:10.2f} "
              f"{held['optimizer'] / 1e6:10.2f} {r['step_peak'][name] / 1e6:10.2f}   "
              f"{spread(r['round_ms'][name]).format(1, replicate='round')}")
    losses = r["losses"]
    gap = max(same_steps(losses[name], losses["ddp"])[0] for name in ("zero", "fsdp"))
    print(f"losses of {len(losses['ddp'])} steps from the same weights: " + "; ".join(
        f"{label} {' '.join(f'{x:.5f}' for x in losses[name])}" for name, label in
        (("ddp", "DDP"), ("zero", "ZeRO-1"), ("fsdp", "FSDP2"))) + f" (largest difference {gap:.1e})")
    print(compare("FSDP2", r["round_ms"]["fsdp"], "DDP", r["round_ms"]["ddp"], metric="ms per step", digits=1,
                  replicate="round"))


def _bpe(bpe: BPETiming) -> None:
    path = fetch(TINYSTORIES_SAMPLE, default_folder("tinystories", "sample") / "sample.txt")
    text = path.read_text(encoding="utf-8")
    print(f"{path}: {len(text):,} characters; {bpe.merges} merges, best of {bpe.repeats} runs of each trainer "
          f"(pre-tokenising included)")
    r = measure_bpe_training(text, bpe.merges, bpe.repeats)
    print(f"recount every pair (train_bpe): {r['recount_s']:.2f} s; incremental (train_bpe_incremental): "
          f"{r['incremental_s']:.2f} s; speed-up {r['speedup']:.1f}x; "
          f"{r['merges']} merges, {'identical' if r['identical'] else 'DIFFERENT'}")


def _cache(spec: ModelSpec) -> None:
    cfg = spec.config()
    dtype = resolve_dtype(resolve_device(spec.device), "auto") if spec.dtype == "auto" else getattr(torch, spec.dtype)
    print(f"shape: {describe_shape(cfg)}, head size {cfg.head_size}")
    print(f"{_cache_size(cfg, dtype)}: 2 (keys and values) x {cfg.n_layer} layers x {cfg.kv_heads} heads x "
          f"{cfg.head_size} x {dtype.itemsize} bytes")


def _speedrun(plan: Race) -> None:
    plan = plan.settled()
    track, seeds, device = get_track(plan.track), list(range(plan.seeds)), resolve_device(plan.device)
    total, seconds, target = 2 * len(seeds), plan.seconds, plan.target
    print(f"{plan.track}: default recipe against speedrun recipe, {format_duration(seconds)} of training each, "
          f"seeds {', '.join(map(str, seeds))} (alternating order), target validation loss {target}, device "
          f"{device}{cpu_threads_note(device)}; {total} runs, about {format_duration(total * seconds * 1.15)} with "
          "evaluations")
    print(f"({TRAINING_TIME}; `python -m tinylm.train {plan.track} --max-seconds {seconds:g}` counts the same)")
    changes = track.speedrun_changes(plan.profile)
    print(f"the speedrun recipe: the default one with {', '.join(f'{name}={value}' for name, value in changes.items())}"
          f" (Muon's Newton–Schulz in {str(newton_schulz_dtype(device)).removeprefix('torch.')} on this {device.type})")
    started = time.perf_counter()

    def report(run: RaceRun, done: int, total: int) -> None:
        reached = "not reached" if run.seconds_to_target is None else f"{run.seconds_to_target:5.1f} s"
        left = (time.perf_counter() - started) / done * (total - done)
        print(f"  run {done}/{total}: {run.recipe:<8} seed {run.seed}: {run.steps:>6,} steps, val loss "
              f"{run.val_loss:.4f}, target {reached}  (ETA {format_duration(left)})", flush=True)

    runs = race(plan, on_run=report)
    print(f"after {format_duration(seconds)} of training each (mean ± half the range over seeds; seconds are "
          "training time, as above):")
    for name, recipe_runs in runs.items():
        reached = [run.seconds_to_target for run in recipe_runs if run.seconds_to_target is not None]
        to_target = (f"seconds to {target}: {spread(reached).format(1)}" if len(reached) == len(recipe_runs)
                     else f"{len(reached)} of {len(recipe_runs)} seeds reached {target}")
        print(f"  {name:<8} val loss {spread([run.val_loss for run in recipe_runs]).format(4)}; {to_target}")
    loss_gap, speedup = compared(runs)
    print(f"speedrun - default, val loss: {loss_gap:+.4f}")
    if speedup is not None:
        verdict = f"{speedup:.2f}x as fast" if speedup >= 1 else f"in {1 / speedup:.2f}x the time of the default recipe"
        print(f"seconds to {target}: the speedrun recipe gets there {verdict}")
    print("nothing was written to disk; to train the speedrun recipe into a run folder: "
          f"python -m tinylm.train {plan.track} --recipe speedrun --profile {plan.profile}")


COMMANDS = {"train": _train, "compile": _compile, "memory": _memory, "sharding": _sharding, "decode": _decode,
            "cache": _cache, "bpe": _bpe, "speedrun": _speedrun}


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


SETTINGS = {"train": (ModelSpec, Timing), "compile": (ModelSpec, Timing), "memory": (ModelSpec, Timing),
            "sharding": (ModelSpec, Timing), "decode": (ModelSpec, Decoding), "cache": (ModelSpec,),
            "bpe": (BPETiming,), "speedrun": (Race,)}  # what each mode is told
TIMING = {"train": ("batch_size", "steps", "reference", "rounds"), "compile": ("batch_size", "rounds"),
          "memory": ("batch_size", "rounds", "account_only"), "sharding": ("batch_size", "rounds", "processes")}


def _model_options(dtype: str) -> argparse.ArgumentParser:
    """The options of the modes that build a model: a preset, a block family, the device, and shape options."""
    options = CommandParser(add_help=False)
    add_options(options, ModelSpec, {"arch_default": "the preset's own", "dtype_default": dtype},
                skip=(*SHAPE_FIELDS, "n_kv_head"))
    names = [f"--{name.replace('_', '-')}" for name in (*SHAPE_FIELDS, "n_kv_head")]
    shape = options.add_argument_group("shape options", f"{', '.join(names[:5])},\n{', '.join(names[5:])} N: "
                                                        "each replaces the preset's value")
    add_options(shape, ModelSpec, {}, skip=("preset", "arch", "device", "dtype"))
    return options


def parse_args(argv=None) -> argparse.Namespace:
    firsts = {"train": 1, "compile": 0, "decode": 0, "cache": 1, "speedrun": 0}  # which of each mode's examples
    parser = command_parser("python -m tinylm.bench", __doc__, tuple(MODES[name][2][i] for name, i in firsts.items()))
    modes = parser.add_subparsers(dest="what", required=True, metavar="MODE",
                                  help="what to measure; python -m tinylm.bench MODE --help says how")
    model, bf16_model = _model_options("auto"), _model_options("bfloat16")
    context = {"batch_what": "sequences per forward pass", "batch_default": "the preset's recipe's; 12 where it has "
               "none", "tracks": list(RACE_DEFAULTS), "track_default": "shakespeare-char",
               "profile_default": "$TINYLM_PROFILE, else cpu", "ckpt_default": "random weights of the shape"}
    for name, kinds in SETTINGS.items():
        parents = () if ModelSpec not in kinds else (bf16_model,) if name == "cache" else (model,)
        mode = add_subcommand(modes, name, *MODES[name], parents)
        for kind in kinds[1:] if parents else kinds:
            skip = [f.name for f in dataclasses.fields(kind) if kind is Timing and f.name not in TIMING[name]]
            add_options(mode, kind, {**context, "when": "with --reference: " if name == "train" else ""}, tuple(skip),
                        defaults={"rounds": ROUNDS.get(name)})
    args = parser.parse_args(argv)
    args.settings = [options_from(parser, args, kind) for kind in SETTINGS[args.what]]
    return args


def main(argv=None) -> None:
    args = begin(parse_args(argv), thread_note=True)
    COMMANDS[args.what](*args.settings)


cli = functools.partial(run_cli, main)  # what `python -m tinylm.bench` runs
