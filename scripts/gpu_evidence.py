"""Measure on a CUDA GPU what the notebooks otherwise estimate, and write it as one dated results file.

Four measurements, each through the course's own code:
1. GPT-2 124M's training step (16 x 1,024 tokens, bf16), eager and compiled: ms/step, tokens/s, MFU
   (tinylm.bench.measure.compare_compiled: same weights, same batches, interleaved rounds);
2. the tinystories track's 51M gpu recipe through `python -m tinylm.train`, as the seed recipe ran it (micro-batches
   of 32, eager) and as the recipe runs now: the Trainer's own tokens/s and MFU;
3. the shakespeare-char gpu recipe, whole: its validation curve, best step and time;
4. the device, torch and the date, so that every figure says where it came from.

    python scripts/gpu_evidence.py --out docs/results/gpu-$(date +%F).json

Each part's figures go to --out as soon as they exist (a part that fails records its error), with a Markdown table
beside it (same name, .md). The notebooks and the course guide cite the committed file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from tinylm.bench.measure import compare_compiled
from tinylm.config import GPT2_124M
from tinylm.model.gpt import GPT
from tinylm.runtime import peak_flops_per_s


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


TINYSTORIES_ARMS = {"32, eager (the seed recipe)": ("--batch-size", "32", "--no-compile"),
                    "64, compiled": ("--batch-size", "64", "--compile"),
                    "128, compiled (the recipe)": ("--batch-size", "128", "--compile")}


def tinystories(folder: Path, seconds: float) -> dict:
    """The 51M recipe for `seconds` of training (its first step, which compiles, included), per micro-batch size."""
    return {arm: steady_speed(train_run("tinystories", folder / f"arm{i}", "--max-seconds", str(seconds), *options,
                                        timeout=240))
            for i, (arm, options) in enumerate(TINYSTORIES_ARMS.items())}


def shakespeare(folder: Path) -> dict:
    run = train_run("shakespeare-char", folder / "shakespeare", timeout=300)
    evals = [r for r in run["records"] if r.get("event") in ("eval", "final")]
    best = min(evals, key=lambda r: r["val_loss"])
    return {"command": run["command"], "wall_s": run["wall_s"], "training_s": round(evals[-1]["elapsed"], 1),
            "curve": [(r["step"], round(r["val_loss"], 4)) for r in evals],
            "best": {"step": best["step"], "val_loss": round(best["val_loss"], 4),
                     "training_s": round(best["elapsed"], 1)},
            "last": {"step": evals[-1]["step"], "val_loss": round(evals[-1]["val_loss"], 4)}}


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
    for part, value in results.items():
        if isinstance(value, dict) and "error" in value:
            lines += [f"{part} failed: {value['error']}", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="the results file (.json; a .md beside it)")
    parser.add_argument("--seconds", type=float, default=45, help="training seconds of each TinyStories run")
    parser.add_argument("--parts", nargs="+", default=["gpt2_step", "tinystories", "shakespeare"])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("scripts/gpu_evidence.py measures a CUDA GPU, and torch sees none here")
    results = {"device": device_facts()}
    folder = Path(tempfile.mkdtemp(prefix="gpu-evidence-"))
    parts = {"gpt2_step": gpt2_step, "tinystories": lambda: tinystories(folder, args.seconds),
             "shakespeare": lambda: shakespeare(folder)}
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
