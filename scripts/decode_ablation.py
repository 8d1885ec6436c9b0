"""What three of the fast decode step's choices gain: the step as it is (`tinylm.generate.fast`) against itself without
huge pages, with `F.rms_norm`, and with its blocks' products split by threads along their outputs (before 2026-11-28:
those of at least 2^19 weights) instead of their inputs, decoding greedily token by token on a stories15M-shaped
model (random weights) or a checkpoint (--ckpt), float32, batch 1.

    python scripts/decode_ablation.py [--ckpt RUN] [--threads 1 2] [--rounds 6] [--tokens 255]

The arms take turns every token, so that a busy moment of a shared machine falls on every arm alike, and their greedy
tokens must be equal. Prints each arm's tokens per second over the rounds, the huge pages its buffers were granted
(Linux), and one norm alone, `F.rms_norm` against the four operations.
"""

from __future__ import annotations

import argparse
import mmap
import re
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinylm.config import LLAMA2C_STORIES15M  # noqa: E402
from tinylm.generate import fast  # noqa: E402
from tinylm.model.gpt import GPT  # noqa: E402
from tinylm.model.kv_cache import KVCache  # noqa: E402
from tinylm.runtime import cpu_name  # noqa: E402
from tinylm.train.checkpoint import load_model  # noqa: E402

# `fast step`: tinylm.generate.fast as it is; `ordinary pages`: its copies in buffers made without the huge-page
# advice (cpu_buffer as where mmap cannot give it, e.g. macOS or Windows); `F.rms_norm`: its norms as the readable
# step calls them instead of the four operations of `fast._norm`.
# `outputs split`: its blocks' products of at least 2^19 weights sliced along their outputs, as before 2026-11-28.
ARMS = ("fast step", "ordinary pages", "F.rms_norm", "outputs split")


def build(model: GPT, arm: str):
    """The arm's step and head, built with the module patched for that arm and restored after."""
    module_mmap, module_norm = fast.mmap, fast._norm
    split_inputs, split_weights = fast._split_inputs, fast.SPLIT_WEIGHTS
    if arm == "ordinary pages":  # mmap without MADV_HUGEPAGE: cpu_buffer takes torch.empty's memory
        fast.mmap = SimpleNamespace(**{k: v for k, v in vars(mmap).items() if k != "MADV_HUGEPAGE"})
    if arm == "F.rms_norm":
        def readable_norm(module):
            if type(module) is torch.nn.RMSNorm:
                return lambda x: F.rms_norm(x, module.normalized_shape, module.weight, module.eps)
            return module_norm(module)
        fast._norm = readable_norm
    if arm == "outputs split":
        fast._split_inputs, fast.SPLIT_WEIGHTS = fast._split_outputs, 1 << 19
    try:
        return fast.fast_decode_step(model), fast.fused_linear(model.lm_head)
    finally:
        fast.mmap, fast._norm, fast._split_inputs, fast.SPLIT_WEIGHTS = (module_mmap, module_norm, split_inputs,
                                                                         split_weights)


def huge_page_kib() -> int | None:
    """What this process holds in transparent huge pages, in KiB (None where /proc does not say)."""
    try:
        return int(re.search(r"AnonHugePages:\s+(\d+)", Path("/proc/self/smaps_rollup").read_text())[1])
    except (OSError, TypeError):
        return None


def one_round(model: GPT, tokens: int) -> tuple[dict[str, float], dict[str, int | None]]:
    """Tokens per second of each arm over `tokens` steps after the prefill, the arms taking turns every token; and the
    KiB of huge pages each arm's buffers were granted."""
    state, granted = {}, {}
    for arm in ARMS:
        before = huge_page_kib()
        step, head = build(model, arm)
        after = huge_page_kib()
        granted[arm] = None if before is None else after - before
        cache = KVCache(model.config, 1)
        logits = model.decode_step(torch.tensor([[1]]), cache, head)  # the prefill: the readable step
        state[arm] = {"step": step, "head": head, "cache": cache, "next": logits.argmax(-1, keepdim=True),
                      "seconds": 0.0, "tokens": []}
    for t in range(tokens):
        for arm in ARMS[t % len(ARMS):] + ARMS[: t % len(ARMS)]:
            s = state[arm]
            start = time.perf_counter()
            s["next"] = s["step"](s["next"], s["cache"], s["head"]).argmax(-1, keepdim=True)
            s["seconds"] += time.perf_counter() - start
            s["tokens"].append(int(s["next"]))
    if any(state[arm]["tokens"] != state[ARMS[0]]["tokens"] for arm in ARMS):
        sys.exit("the arms' greedy tokens differ: a bug in one of them")
    return {arm: tokens / state[arm]["seconds"] for arm in ARMS}, granted


def norm_alone(rounds: int = 15, calls: int = 2000) -> dict[str, float]:
    """Median µs of one call of each norm on x (1, 288), over `rounds` rounds of `calls` calls, the two interleaved."""
    norm = torch.nn.RMSNorm(LLAMA2C_STORIES15M.n_embd, eps=LLAMA2C_STORIES15M.norm_eps)
    x = torch.randn(1, LLAMA2C_STORIES15M.n_embd)
    norms = {"F.rms_norm": lambda x: F.rms_norm(x, norm.normalized_shape, norm.weight, norm.eps),
             "four operations": fast._norm(norm)}
    times = {name: [] for name in norms}
    with torch.inference_mode():
        for _ in range(rounds):
            for name, f in norms.items():
                start = time.perf_counter()
                for _ in range(calls):
                    f(x)
                times[name].append((time.perf_counter() - start) / calls * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", help="a run folder or checkpoint instead of stories15M's shape")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=255, help="timed steps a round (at most the context less one)")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = load_model(args.ckpt)[0].float().eval() if args.ckpt else GPT(LLAMA2C_STORIES15M).eval()
    tokens = min(args.tokens, model.config.block_size - 1)
    shape = args.ckpt or "stories15M's shape, random weights"
    print(f"{shape}, float32, batch 1, greedy; {args.rounds} rounds of {tokens} tokens, "
          f"the arms taking turns every token; CPU: {cpu_name()}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        rates, granted = {arm: [] for arm in ARMS}, {}
        with torch.inference_mode():
            for _ in range(args.rounds):
                round_rates, granted = one_round(model, tokens)
                for arm, rate in round_rates.items():
                    rates[arm].append(rate)
        for arm in ARMS:
            r, base = rates[arm], rates[ARMS[0]]
            line = (f"{threads} thread(s), {arm:15s} median {statistics.median(r):6.1f} tok/s "
                    f"(range {min(r):.1f}-{max(r):.1f})")
            if arm != ARMS[0]:
                gain = statistics.median(base) / statistics.median(r) - 1
                wins = sum(b > a for a, b in zip(r, base))
                line += f"; the fast step's median {gain:+.1%} over it, faster in {wins} of {len(r)} rounds"
            if granted[arm] is not None:
                line += f"; huge pages granted to its buffers (last round): {granted[arm] / 1024:.0f} MiB"
            print(line, flush=True)
    torch.set_num_threads(1)
    alone = norm_alone()
    print(f"one norm alone (1 x {LLAMA2C_STORIES15M.n_embd}, 1 thread, medians of 15 rounds of 2,000 calls): "
          f"F.rms_norm {alone['F.rms_norm']:.1f} µs, four operations {alone['four operations']:.1f} µs")


if __name__ == "__main__":
    main()
