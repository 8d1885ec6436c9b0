"""bf16 against fp32 on this machine's CPU: one matrix product, and one block's Newton–Schulz as Muon runs it.

    python scripts/bf16_speed.py [--rounds 7] [--threads 1] [--width 128]

Prints what PyTorch dispatches to, what `tinylm.runtime.bf16_is_fast` answers, and the milliseconds of a
(128 x 384)·(384 x 384) product and of the four Newton–Schulz calls of one `--width`-wide block of the shakespeare-char
speedrun recipe, each in float32 and in bfloat16, interleaved (best round). `ATEN_CPU_CAPABILITY=avx2
ONEDNN_MAX_CPU_ISA=AVX2` in the environment makes an AVX-512 CPU dispatch as an AVX2 one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinylm.bench.measure import interleaved_seconds  # noqa: E402
from tinylm.runtime import bf16_is_fast, cpu_dispatch_has_bf16, cpu_name  # noqa: E402
from tinylm.train.muon import newton_schulz, newton_schulz_dtype  # noqa: E402


def cpu_description() -> str:
    """The CPU as `tinylm.runtime.cpu_name` names it, and which of its bf16 flags /proc/cpuinfo lists (Linux)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return cpu_name()
    lines = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    flags = set(lines.get("flags\t\t", "").split())
    native = sorted(flags & {"avx512_bf16", "amx_bf16", "avx512f"})
    return f"{cpu_name()} (flags: {', '.join(native) or 'no avx512f, avx512_bf16 or amx_bf16'})"


def best_ms(runs: dict, rounds: int) -> dict[str, float]:
    return {name: min(times) * 1e3 for name, times in interleaved_seconds(runs, rounds).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--width", type=int, default=128, help="the block's n_embd (the speedrun recipe's: 128)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_description()}")
    print(f"PyTorch {torch.__version__}: CPU capability {torch.backends.cpu.get_cpu_capability()}, oneDNN bf16 "
          f"{torch.ops.mkldnn._is_mkldnn_bf16_supported()}; cpu_dispatch_has_bf16 {cpu_dispatch_has_bf16()}, "
          f"bf16_is_fast {bf16_is_fast('cpu')} -> Newton-Schulz in {newton_schulz_dtype('cpu')}")
    print(f"{args.threads} thread(s), best of {args.rounds} interleaved rounds")

    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(128, 384, generator=generator), torch.randn(384, 384, generator=generator)
    products = {str(dtype): (lambda x=a.to(dtype), y=b.to(dtype): [x @ y for _ in range(10)])
                for dtype in (torch.float32, torch.bfloat16)}
    ms = best_ms(products, args.rounds)
    fp32, bf16 = ms["torch.float32"] / 10, ms["torch.bfloat16"] / 10
    print(f"(128x384)·(384x384) product: float32 {fp32:.3f} ms, bfloat16 {bf16:.3f} ms ({bf16 / fp32:.1f}x)")

    c = args.width
    block = [torch.randn(shape, generator=generator) for shape in ((3 * c, c), (c, c), (4 * c, c), (c, 4 * c))]
    iterations = {str(dtype): (lambda dtype=dtype: [newton_schulz(g, dtype=dtype) for g in block])
                  for dtype in (torch.float32, torch.bfloat16)}
    ms = best_ms(iterations, args.rounds)
    fp32, bf16 = ms["torch.float32"], ms["torch.bfloat16"]
    chosen = ms[str(newton_schulz_dtype("cpu"))]
    print(f"one block's Newton-Schulz ({c} wide, 4 matrices, 5 steps each): float32 {fp32:.2f} ms, bfloat16 "
          f"{bf16:.2f} ms ({bf16 / fp32:.1f}x)")
    print(f"Muon per block and step: before (always bfloat16) {bf16:.2f} ms, now ({newton_schulz_dtype('cpu')}) "
          f"{chosen:.2f} ms")


if __name__ == "__main__":
    main()
