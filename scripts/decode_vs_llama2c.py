"""Decoding speed against llama2.c's run.c on the same weights: tinylm's fast and readable steps and run.c, interleaved.

    python scripts/decode_vs_llama2c.py --write-model model.bin     # random stories15M-shaped weights, tinylm's export
    git clone https://github.com/karpathy/llama2.c
    python scripts/decode_vs_llama2c.py --llama2c llama2.c --model model.bin [--threads 1 2] [--rounds 3]

Both sides decode greedily at batch 1 in float32 from BOS through the model's whole context and count tokens per
second after the first, as run.c reports them; --llama2c builds run.c as `make runomp` does (`build_run_c`). With
--products it also profiles the fast step's matrix products (`profiled_products`) against run.c's whole token.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinylm.config import LLAMA2C_STORIES15M  # noqa: E402
from tinylm.generate.decode import decode  # noqa: E402
from tinylm.generate.sampling import Sampling  # noqa: E402
from tinylm.interop.llama2c import from_llama2c, write_llama2c  # noqa: E402
from tinylm.model.gpt import GPT  # noqa: E402
from tinylm.runtime import configure_backend  # noqa: E402

BOS = 1  # Llama 2's beginning of sequence, run.c's first token and its stop token
PRODUCTS = ("aten::mm", "aten::bmm", "aten::addmm")  # the kernels under the fast step's products (matmul, linear)


def tinylm_tokens_per_s(model: GPT, fast: bool) -> tuple[float, list[int]]:
    """Greedy decoding of the whole context after BOS; tokens per second after the first one, as run.c counts."""
    steps = model.config.block_size
    tokens, start = [], None
    for token in decode(model, [[BOS]], steps, Sampling(temperature=0), fast=fast):
        tokens.append(int(token))
        if start is None:
            start = time.perf_counter()  # run.c starts its clock after its first step
    return (len(tokens) - 1) / (time.perf_counter() - start), tokens


def profiled_products(model: GPT) -> tuple[float, float]:
    """One greedy fast decode of the whole context under torch.profiler: the self CPU time of PRODUCTS and the whole
    decode's time (from its first token on, as timed unprofiled), both in ms a token. The products' time less all
    that the profiler added to the whole decode is a floor under what they take unprofiled (the profiler's cost inside
    them is part of what it added): where even that floor exceeds run.c's whole token, no saving elsewhere in the step
    can make it match run.c."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        tokens_per_s, tokens = tinylm_tokens_per_s(model, fast=True)
    microseconds = sum(event.self_cpu_time_total for event in profiled.key_averages() if event.key in PRODUCTS)
    return microseconds / 1e3 / len(tokens), 1e3 / tokens_per_s


def run_c_tokens_per_s(run: Path, model: Path, tokenizer: Path, steps: int, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    result = subprocess.run([str(run), str(model), "-t", "0", "-n", str(steps), "-z", str(tokenizer)],
                            capture_output=True, text=True, env=env, timeout=600)
    found = re.search(r"achieved tok/s: ([0-9.]+)", result.stderr)
    if result.returncode != 0 or found is None:
        sys.exit(f"error: {run} did not report its speed (exit status {result.returncode}): {result.stderr[-300:]}")
    return float(found.group(1))


def build_run_c(checkout: Path, folder: Path) -> Path:
    """run.c compiled as llama2.c's `make runomp` compiles it (OpenMP left out where the compiler lacks it)."""
    source, binary = checkout / "run.c", folder / "run"
    if not source.is_file():
        sys.exit(f"error: {checkout} has no run.c: point --llama2c at a clone of https://github.com/karpathy/llama2.c")
    base = ["gcc", "-Ofast", "-march=native", str(source), "-lm", "-o", str(binary)]
    for command in (base[:1] + ["-fopenmp"] + base[1:], base):
        if subprocess.run(command, capture_output=True).returncode == 0:
            print(f"built {binary} with: {' '.join(command)}")
            return binary
    sys.exit(f"error: gcc could not build {source} (is gcc installed?)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-model", type=Path, metavar="PATH", help="write random stories15M-shaped weights to "
                        "PATH (llama2.c's format) and stop")
    parser.add_argument("--llama2c", type=Path, metavar="CHECKOUT", help="a llama2.c checkout: build its run.c and "
                        "use its tokenizer.bin")
    parser.add_argument("--run", type=Path, help="an already built llama2.c run.c binary (instead of --llama2c)")
    parser.add_argument("--model", type=Path, help="a llama2.c legacy .bin model")
    parser.add_argument("--tokenizer", type=Path, help="llama2.c's tokenizer.bin")
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--readable", action="store_true", help="also time tinylm's readable step")
    parser.add_argument("--products", action="store_true", help="then the fast step's matrix products per token, "
                        "profiled and a floor unprofiled, against run.c's whole token")
    args = parser.parse_args()
    if args.write_model:
        torch.manual_seed(0)
        path = write_llama2c(GPT(LLAMA2C_STORIES15M), args.write_model)
        print(f"wrote {path} ({path.stat().st_size:,} bytes): random weights of llama2.c's stories15M shape")
        return
    if args.llama2c:
        args.run = build_run_c(args.llama2c, Path(tempfile.mkdtemp(prefix="llama2c-")))
        args.tokenizer = args.tokenizer or args.llama2c / "tokenizer.bin"
    missing = [f"--{name}" for name in ("run", "model", "tokenizer") if getattr(args, name) is None]
    if missing:
        parser.error(f"{', '.join(missing)} needed (--llama2c CHECKOUT gives --run and --tokenizer; or --write-model)")
    for path in (args.run, args.model, args.tokenizer):
        if not path.is_file():
            parser.error(f"{path} is not a file")
    configure_backend("cpu")  # the allocator setting every command makes; the threads are set below, per row
    model = from_llama2c(args.model).eval()
    steps = model.config.block_size
    print(f"{args.model}: {model.num_parameters():,} parameters, float32, batch 1, greedy from BOS for {steps} steps; "
          f"best of {args.rounds} interleaved rounds; CPU: {torch.backends.cpu.get_cpu_capability()} capability")
    contenders = {"tinylm fast": lambda: tinylm_tokens_per_s(model, fast=True)[0],
                  "run.c": lambda: run_c_tokens_per_s(args.run, args.model, args.tokenizer, steps, threads)}
    if args.readable:
        contenders["tinylm readable"] = lambda: tinylm_tokens_per_s(model, fast=False)[0]
    for threads in args.threads:
        torch.set_num_threads(threads)
        tokens = tinylm_tokens_per_s(model, fast=True)[1]  # also the warm-up
        if BOS in tokens:
            print(f"note: greedy decoding draws BOS after {tokens.index(BOS)} tokens, where run.c stops")
        if args.readable:
            same = tinylm_tokens_per_s(model, fast=False)[1] == tokens
            print(f"the fast and readable steps' {len(tokens)} tokens: {'equal' if same else 'DIFFERENT'}")
        best = dict.fromkeys(contenders, 0.0)
        for round_ in range(args.rounds):
            for name in (list(contenders) if round_ % 2 == 0 else list(contenders)[::-1]):
                best[name] = max(best[name], contenders[name]())
        figures = ", ".join(f"{name} {speed:,.1f} tok/s" for name, speed in best.items())
        print(f"{threads} thread(s): {figures}; tinylm fast / run.c = {best['tinylm fast'] / best['run.c']:.2f}x")
        if args.products:
            products_ms, profiled_ms = profiled_products(model)
            added_ms = max(0.0, profiled_ms - 1e3 / best["tinylm fast"])  # all the profiler added, a token
            print(f"  the fast step's products: {products_ms:.2f} ms a token profiled; the profiler added "
                  f"{added_ms:.2f} ms a token to the whole decode, so unprofiled they took at least "
                  f"{products_ms - added_ms:.2f} ms; run.c's best whole token: {1e3 / best['run.c']:.2f} ms")


if __name__ == "__main__":
    main()
