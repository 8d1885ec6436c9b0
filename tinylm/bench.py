"""Command line: measure training throughput of a model shape on this machine.

    python -m tinylm.bench train [--n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12]

Times full optimizer steps (forward, backward, AdamW) on random tokens after a few warm-up steps
and prints tokens/s and the achieved FLOP/s. The defaults are nanoGPT's CPU shape for
shakespeare-char. Figures depend on the machine and on what else it is doing: run it on a quiet
machine, and compare shapes within one run.
"""

from __future__ import annotations

import argparse
import time

import torch

from .config import GPTConfig, TrainConfig
from .model import GPT
from .optim import build_optimizer
from .runtime import autocast, resolve_device, resolve_dtype


def measure_training(model_cfg: GPTConfig, batch_size: int, steps: int = 30, warmup: int = 5,
                     device: str | None = None, dtype: str = "auto") -> dict:
    device = resolve_device(device)
    torch_dtype = resolve_dtype(device, dtype)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
    x = torch.randint(model_cfg.vocab_size, (batch_size, model_cfg.block_size), device=device)
    y = torch.randint(model_cfg.vocab_size, (batch_size, model_cfg.block_size), device=device)

    def one_step():
        with autocast(device, torch_dtype):
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    tokens = batch_size * model_cfg.block_size
    return {"parameters": model.num_parameters(), "step_ms": seconds * 1e3, "tokens_per_s": tokens / seconds,
            "tflops": model.flops_per_token() * tokens / seconds / 1e12, "device": str(device),
            "dtype": str(torch_dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["train"])
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    cfg = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd)
    r = measure_training(cfg, args.batch_size, steps=args.steps, device=args.device, dtype=args.dtype)
    print(f"shape: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, context {args.block_size}, "
          f"batch {args.batch_size}, vocab {args.vocab_size} ({r['parameters']:,} parameters)")
    print(f"device {r['device']} ({r['threads']} threads), dtype {r['dtype']}: {r['step_ms']:.1f} ms/step, "
          f"{r['tokens_per_s']:,.0f} training tokens/s, {r['tflops'] * 1e3:.1f} GFLOP/s")


if __name__ == "__main__":
    main()
