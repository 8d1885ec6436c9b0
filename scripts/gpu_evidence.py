"""Measure on a CUDA GPU what the notebooks otherwise estimate, through the course's own code, into one dated results
file with a Markdown table beside it (same name, .md); each part is written as soon as it exists, or its error.

    python scripts/gpu_evidence.py --out docs/results/gpu-$(date +%F).json

The parts: GPT-2 124M's training step eager and compiled (ms/step, tokens/s, MFU); the tinystories gpu recipe through
`python -m tinylm.train`, as the seed recipe ran it and as it runs now; the shakespeare-char gpu recipe, whole; the
51M model's step in variants, one change at a time, and its GPU time by kernel kind; GPT-2's step with its vocabulary
padded to a multiple of 64 or not; the device, torch and the date.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch

from tinylm.bench.measure import compare_compiled, training_step
from tinylm.config import GPT2_124M, TrainConfig
from tinylm.model.gpt import GPT
from tinylm.runtime import autocast, peak_flops_per_s
from tinylm.train.optim import build_optimizer
from tinylm.train.recipes import TINYSTORIES


def device_facts() -> dict:
    device = torch.device("cuda")
    return {"date": datetime.date.today().isoformat(), "gpu": torch.cuda.get_device_name(device),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "peak_bf16_tflops": peak_flops_per_s(device, torch.bfloat16) / 1e12}


def gpt2_step(batch_size: int = 16, rounds: int = 6) -> dict:
    """124M eager against compiled, bf16, batch_size x 1,024 tokens."""
    measured = compare_compiled(GPT2_124M, batch_size, rounds=rounds, steps_per_round=4, loss_steps=10,
                                device="cuda", dtype="bfloat16")
    tokens = batch_size * GPT2_124M.block_size
    flops = GPT(GPT2_124M).flops_per_token() * tokens
    peak = peak_flops_per_s(torch.device("cuda"), torch.bfloat16)
    arms = {}
    for arm in ("eager", "compiled"):
        ms = min(measured["round_ms"][arm])
        arms[arm] = {"ms_per_step": round(ms, 2), "tokens_per_s": round(tokens / ms * 1e3),
                     "mfu": round(flops / (ms / 1e3) / peak, 4)}
    return {"batch": f"{batch_size} x {GPT2_124M.block_size}", "dtype": measured["dtype"],
            "compile_s": round(measured["compile_s"], 1), **arms,
            "losses_agree": max(abs(a - b) for a, b in zip(*measured["losses"].values())) < 1e-2}


def vocab_padding(batch_size: int = 16, rounds: int = 8, steps: int = 5) -> dict:
    """GPT-2 124M's eager bf16 training step (forward, backward, AdamW) with its 50,257-row vocabulary and with it
    padded to 50,304, timed in interleaved rounds (the order swapping each round); a round's time is its median step,
    an arm's the upper median of its rounds (and their range)."""
    device = torch.device("cuda")
    steps_of, times = {}, {}
    batch = torch.randint(50257, (batch_size, GPT2_124M.block_size + 1), device=device)  # ids both vocabularies have
    for rows in (50257, 50304):
        torch.manual_seed(0)
        model = GPT(dataclasses.replace(GPT2_124M, vocab_size=rows)).to(device)
        optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
        steps_of[rows] = training_step(model, optimizer, batch[:, :-1], batch[:, 1:], device, torch.bfloat16)
        times[rows] = []

    def step(rows: int) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        steps_of[rows]()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e3

    for rows in steps_of:  # warm-up: kernels chosen and caches filled before any timing
        for _ in range(3):
            step(rows)
    for index in range(rounds):
        for rows in (list(steps_of) if index % 2 == 0 else list(steps_of)[::-1]):
            times[rows].append(sorted(step(rows) for _ in range(steps))[steps // 2])
    result = {"batch": f"{batch_size} x {GPT2_124M.block_size}", "rounds": rounds, "steps_per_round": steps}
    for rows, measured in times.items():
        ordered = sorted(measured)
        result[str(rows)] = {"ms_per_step": round(ordered[len(ordered) // 2], 2),
                             "range_ms": [round(ordered[0], 2), round(ordered[-1], 2)]}
    result["padded_over_unpadded"] = round(result["50304"]["ms_per_step"] / result["50257"]["ms_per_step"], 4)
    return result


def train_run(track: str, out: Path, *options: str, timeout: float) -> dict:
    """`python -m tinylm.train TRACK --profile gpu OPTIONS` into `out`; its records from metrics.jsonl."""
    command = [sys.executable, "-m", "tinylm.train", track, "--profile", "gpu", "--out", str(out), "--overwrite",
               *options]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:])} exited {done.returncode}: {done.stderr[-2000:]}")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    shown_command = " ".join(command[1:]).replace(f" --out {out} --overwrite", "")
    return {"command": f"python {shown_command}", "wall_s": round(wall, 1),
            "header": [line for line in done.stdout.splitlines() if " | profile gpu | " in line][:1],
            "records": records}


def steady_speed(run: dict) -> dict:
    """The train records after the first (which holds the compile and warm-up): mean tokens/s, MFU, s/step."""
    train = [r for r in run["records"] if r.get("event") == "train"][1:]
    mean = lambda key: sum(r[key] for r in train) / len(train)  # noqa: E731
    return {"command": run["command"], "header": run["header"], "records": len(train),
            "tokens_per_s": round(mean("tokens_per_s")), "mfu": round(mean("mfu"), 4),
            "s_per_step": round(mean("step_seconds"), 4), "wall_s": run["wall_s"]}


TINYSTORIES_ARMS = {"32": ("32, eager (the seed recipe)", ("--batch-size", "32", "--set", "compile=false")),
                    "64": ("64, compiled", ("--batch-size", "64", "--set", "compile=true")),
                    "128": ("128, compiled (the recipe)", ("--batch-size", "128", "--set", "compile=true")),
                    "256": ("256, compiled", ("--batch-size", "256", "--set", "compile=true"))}


def tinystories(folder: Path, seconds: float, arms: list[str]) -> dict:
    """The 51M recipe for `seconds` of training (its first step, which compiles, included), per micro-batch size."""
    return {TINYSTORIES_ARMS[arm][0]: steady_speed(train_run("tinystories", folder / f"arm{arm}", "--max-seconds",
                                                             str(seconds), *TINYSTORIES_ARMS[arm][1], timeout=240))
            for arm in arms}


def shakespeare(folder: Path) -> dict:
    run = train_run("shakespeare-char", folder / "shakespeare", timeout=300)
    evals = [r for r in run["records"] if r.get("event") in ("eval", "final")]
    best = min(evals, key=lambda r: r["val_loss"])
    return {"command": run["command"], "wall_s": run["wall_s"], "training_s": round(evals[-1]["elapsed"], 1),
            "curve": [(r["step"], round(r["val_loss"], 4)) for r in evals],
            "best": {"step": best["step"], "val_loss": round(best["val_loss"], 4),
                     "training_s": round(best["elapsed"], 1)},
            "last": {"step": evals[-1]["step"], "val_loss": round(evals[-1]["val_loss"], 4)}}


_STORIES_SHAPE, _STORIES_TRAIN = TINYSTORIES.recipes["gpu"]
STEP_TOKENS = _STORIES_TRAIN.total_batch_tokens  # the 51M recipe's tokens per optimizer step
STORIES_51M = _STORIES_SHAPE.config(vocab_size=50304)  # GPT-2's 50,257 tokens padded to a multiple of 64


class StepVariant(NamedTuple):
    label: str  # as the results file names it
    micro_batch: int
    changes: dict  # to STORIES_51M
    compile_options: dict  # to torch.compile
    loss: str  # "model" (logits, then cross-entropy), or a library's fused head + loss: "liger", "cut"


# Each differs from the recipe in one thing, except "wide-liger", which joins two. The fused losses never hold all
# (tokens x 50,304) logits: Liger Kernel's computes them in chunks, Cut Cross-Entropy's never writes them to memory.
# They need their packages (liger-kernel, cut-cross-entropy); the default list, DEFAULT_VARIANTS, does not.
WIDE = {"n_layer": 4, "n_embd": 640, "n_head": 10}  # about the recipe's parameters, half its depth
STEP_VARIANTS = {
    "recipe": StepVariant("recipe: 128 x 256", 128, {}, {}, "model"),
    "micro-256": StepVariant("micro-batch 256", 256, {}, {}, "model"),
    "vocab-8192": StepVariant("vocabulary 8,192", 128, {"vocab_size": 8192}, {}, "model"),
    "context-1024": StepVariant("context 1,024 (32 x 1,024)", 32, {"block_size": 1024}, {}, "model"),
    "micro-64": StepVariant("micro-batch 64", 64, {}, {}, "model"),
    "max-autotune": StepVariant("max-autotune-no-cudagraphs", 128, {}, {"mode": "max-autotune-no-cudagraphs"},
                                "model"),  # compiles longest
    "wide": StepVariant("wider: 4 layers x 640 (51.9M)", 128, WIDE, {}, "model"),
    "6x576": StepVariant("6 layers x 576 (52.9M)", 128, {"n_layer": 6, "n_embd": 576, "n_head": 9}, {}, "model"),
    "liger": StepVariant("head + loss fused (Liger Kernel)", 128, {}, {}, "liger"),
    "cut": StepVariant("head + loss fused (Cut Cross-Entropy)", 128, {}, {}, "cut"),
    "wide-liger": StepVariant("wider + Liger", 128, WIDE, {}, "liger"),
}
DEFAULT_VARIANTS = ["recipe", "micro-256", "vocab-8192", "context-1024", "micro-64", "max-autotune"]


def fused_loss(name: str):
    """(hidden (N, C), head weight (V, C), targets (N,)) -> mean cross-entropy, from a library that fuses them."""
    if name == "liger":
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

        return lambda h, w, t: liger_fused_linear_cross_entropy(h, w, t, accum_dtype=torch.float32)
    from cut_cross_entropy import linear_cross_entropy

    return lambda h, w, t: linear_cross_entropy(h, w, t)


def whole_step(micro_batch: int, changes: dict, compile_options: dict, loss: str = "model", steps: int = 8,
               profile_kernels: bool = False) -> dict:
    """A compiled optimizer step of STEP_TOKENS tokens in micro-batches (accumulated, clipped, AdamW), as the
    Trainer takes it, on random tokens: its median ms over `steps` steps after three warm-up steps, and MFU."""
    config = dataclasses.replace(STORIES_51M, **changes)
    torch.manual_seed(0)
    model = GPT(config).cuda()
    optimizer = build_optimizer(model, TrainConfig(batch_size=micro_batch), torch.device("cuda"))
    if loss == "model":
        compiled = torch.compile(model, **compile_options)
        forward = lambda x, y: compiled(x, y)[1]  # noqa: E731
    else:
        body, head_loss = torch.compile(model.hidden_states, **compile_options), fused_loss(loss)
        forward = lambda x, y: head_loss(body(x).flatten(0, 1).to(torch.bfloat16),  # noqa: E731
                                         model.lm_head.weight.to(torch.bfloat16), y.flatten())
    micro_steps = STEP_TOKENS // (micro_batch * config.block_size)
    batches = [torch.randint(config.vocab_size, (2, micro_batch, config.block_size), device="cuda")
               for _ in range(micro_steps)]

    def step() -> torch.Tensor:
        for x, y in batches:
            with autocast(torch.device("cuda"), torch.bfloat16):
                micro_loss = forward(x, y)
            (micro_loss / micro_steps).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return micro_loss.detach()

    started = time.perf_counter()
    first_loss = step().item()  # random tokens: about ln(vocabulary) whichever loss computes it
    for _ in range(2):
        step()
    torch.cuda.synchronize()
    warm_up_s = time.perf_counter() - started
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    ms = sorted(times)[len(times) // 2]
    peak = peak_flops_per_s(torch.device("cuda"), torch.bfloat16)
    flops = model.flops_per_token() * STEP_TOKENS
    result = {"micro_batch": f"{micro_batch} x {config.block_size}", "parameters": model.num_parameters(),
              "ms_per_step": round(ms, 1), "spread_ms": [round(min(times), 1), round(max(times), 1)],
              "tokens_per_s": round(STEP_TOKENS / ms * 1e3), "mfu": round(flops / (ms / 1e3) / peak, 4),
              "warm_up_s": round(warm_up_s, 1), "first_loss": round(first_loss, 4)}
    if profile_kernels:
        try:
            result["kernels"] = kernel_shares(step)
        except Exception as error:  # noqa: BLE001 - the timing stands without the profile
            result["kernels_error"] = f"{type(error).__name__}: {error}"
    return result


def kernel_shares(step) -> dict:
    """GPU time of one step by kind of kernel (matrix products, attention, the rest), from torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    kinds: dict[str, float] = {}
    for event in prof.key_averages():
        total = getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
        name = event.key.lower()
        kind = ("matrix products" if any(k in name for k in ("gemm", "nvjet", "cutlass", "sm90_xmma", "matmul"))
                else "attention" if any(k in name for k in ("flash", "fmha", "attention"))
                else "fused elementwise and reductions (triton)" if name.startswith("triton") else "other")
        kinds[kind] = kinds.get(kind, 0.0) + total
    whole = sum(kinds.values()) or 1.0
    return {kind: round(t / whole, 3) for kind, t in sorted(kinds.items(), key=lambda kv: -kv[1])}


def step_variants(budget_s: float, names: list[str]) -> dict:
    started, results = time.perf_counter(), {}
    for key in names:
        variant = STEP_VARIANTS[key]
        name = variant.label
        if time.perf_counter() - started > budget_s:
            results[name] = {"error": f"skipped: past the {budget_s:.0f} s budget"}
            continue
        try:
            results[name] = whole_step(variant.micro_batch, variant.changes, variant.compile_options, variant.loss,
                                       profile_kernels=key == "recipe")
        except Exception as error:  # noqa: BLE001 - a variant that fails is recorded, the rest still run
            results[name] = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
        finally:
            torch.compiler.reset()  # each variant compiles afresh; the last one's graphs and memory go
            torch.cuda.empty_cache()
        print(name, json.dumps(results[name]), flush=True)
    return results


def markdown(results: dict) -> str:
    facts = results["device"]
    lines = [f"# GPU measurements, {facts['date']}", "",
             f"{facts['gpu']}, torch {facts['torch']} (CUDA {facts['cuda']}); MFU against "
             f"{facts['peak_bf16_tflops']:.1f} TFLOP/s dense bf16 (`tinylm.runtime.PEAK_TFLOPS`). Made by "
             "`python scripts/gpu_evidence.py`; the JSON beside this file holds every record.", ""]
    if "gpt2_step" in results and "error" not in results["gpt2_step"]:
        step = results["gpt2_step"]
        lines += [f"## GPT-2 124M training step ({step['batch']} tokens, {step['dtype']}, AdamW)", "",
                  "| | ms/step | tokens/s | MFU |", "|---|---|---|---|"]
        lines += [f"| {arm} | {step[arm]['ms_per_step']} | {step[arm]['tokens_per_s']:,} | "
                  f"{100 * step[arm]['mfu']:.1f}% |" for arm in ("eager", "compiled")]
        lines += ["", f"First compiled step: {step['compile_s']} s of compiling. Losses agree: "
                  f"{step['losses_agree']}.", ""]
    if "tinystories" in results and "error" not in results["tinystories"]:
        lines += ["## TinyStories 51M, `train tinystories --profile gpu` (the Trainer's own figures)", "",
                  "| micro-batch | command | tokens/s | MFU | s/step |", "|---|---|---|---|---|"]
        for arm, run in results["tinystories"].items():
            lines.append(f"| {arm} | `{run['command']}` | {run['tokens_per_s']:,} | {100 * run['mfu']:.1f}% | "
                         f"{run['s_per_step']} |")
        lines.append("")
    if "shakespeare" in results and "error" not in results["shakespeare"]:
        run = results["shakespeare"]
        lines += ["## shakespeare-char, the gpu recipe whole", "", f"`{run['command']}`: best validation loss "
                  f"{run['best']['val_loss']} at step {run['best']['step']:,} ({run['best']['training_s']} s of "
                  f"training); {run['last']['val_loss']} at step {run['last']['step']:,} "
                  f"({run['training_s']} s of training, {run['wall_s']} s wall).", "",
                  "| step | validation loss |", "|---|---|", *[f"| {s:,} | {v} |" for s, v in run["curve"]], ""]
    if "step_variants" in results:
        lines += ["## TinyStories 51M, the whole step (262,144 tokens, bf16, compiled, random tokens)", "",
                  "| variant | micro-batch | ms/step (min-max) | tokens/s | MFU | first loss |",
                  "|---|---|---|---|---|---|"]
        for name, run in results["step_variants"].items():
            if "error" in run:
                lines.append(f"| {name} | | {run['error']} | | | |")
                continue
            lines.append(f"| {name} | {run['micro_batch']} | {run['ms_per_step']} ({run['spread_ms'][0]}-"
                         f"{run['spread_ms'][1]}) | {run['tokens_per_s']:,} | {100 * run['mfu']:.1f}% | "
                         f"{run['first_loss']} |")
        lines.append("")
        for run in results["step_variants"].values():
            if "kernels" in run:
                shares = ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in run["kernels"].items())
                lines += [f"The recipe's step by GPU time (torch.profiler): {shares}.", ""]
    if "vocab_padding" in results and "error" not in results["vocab_padding"]:
        run = results["vocab_padding"]
        lines += [f"## GPT-2 124M's eager bf16 step, vocabulary unpadded or padded ({run['batch']} tokens)", "",
                  "| vocabulary rows | ms/step (median round; range) |", "|---|---|",
                  *[f"| {rows} | {run[rows]['ms_per_step']} ({run[rows]['range_ms'][0]}-{run[rows]['range_ms'][1]}) |"
                    for rows in ("50257", "50304")],
                  "", f"Padded over unpadded: {run['padded_over_unpadded']} ({run['rounds']} interleaved rounds of "
                  f"{run['steps_per_round']} steps).", ""]
    for part, value in results.items():
        if isinstance(value, dict) and "error" in value:
            lines += [f"{part} failed: {value['error']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the results file (.json; a .md beside it)")
    parser.add_argument("--seconds", type=float, default=45, help="training seconds of each TinyStories run")
    parser.add_argument("--parts", nargs="+", default=["gpt2_step", "tinystories", "shakespeare", "step_variants"])
    parser.add_argument("--tinystories-arms", nargs="+", default=list(TINYSTORIES_ARMS), choices=TINYSTORIES_ARMS,
                        help="micro-batch sizes of the TinyStories runs")
    parser.add_argument("--variants-budget", type=float, default=300, help="seconds before no new variant starts")
    parser.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=STEP_VARIANTS,
                        help="step variants to time, the recipe's among them")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("scripts/gpu_evidence.py measures a CUDA GPU, and torch sees none here")
    results = {"device": device_facts()}
    folder = Path(tempfile.mkdtemp(prefix="gpu-evidence-"))
    parts = {"gpt2_step": gpt2_step, "tinystories": lambda: tinystories(folder, args.seconds, args.tinystories_arms),
             "shakespeare": lambda: shakespeare(folder),
             "step_variants": lambda: step_variants(args.variants_budget, args.variants),
             "vocab_padding": vocab_padding}
    for name in args.parts:
        print(f"{name} ...", flush=True)
        try:
            results[name] = parts[name]()
        except Exception as error:  # noqa: BLE001 - the other parts still run; the file says what failed
            results[name] = {"error": f"{type(error).__name__}: {error}"}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(markdown(results))
        print(json.dumps({k: v for k, v in results[name].items() if k not in ("curve", "records")}), flush=True)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    os.environ.setdefault("TINYLM_PROFILE", "gpu")
    main()
