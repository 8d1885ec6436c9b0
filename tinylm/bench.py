"""Command line: measure training throughput, or decoding speed with and without the KV cache.

    python -m tinylm.bench train [--n-layer 4 --n-head 4 --n-embd 128 --block-size 64 --batch-size 12]
    python -m tinylm.bench decode [--ckpt runs/shakespeare-char-cpu | shape options] [--new-tokens 500]
        [--prompt-tokens 1 200] [--dtype bfloat16]

`train` times full optimizer steps (forward, backward, AdamW) on random tokens after a few warm-up
steps and prints tokens/s and the achieved FLOP/s. The defaults are nanoGPT's CPU shape for
shakespeare-char.

`decode` generates greedily from a batch of one prompt (random ids; a checkpoint's weights, or
random weights for a shape) with the cache and without it, three times each, and prints the best
speed of each (new tokens per second, prefill included), the speed-up, and whether the tokens are
identical.

Figures depend on the machine and on what else it is doing: run it on a quiet machine, and compare
within one run.
"""

from __future__ import annotations

import argparse
import time

import torch

from .checkpoint import CheckpointError, load_model
from .config import GPTConfig, TrainConfig
from .generate import generate
from .logging import run_cli
from .model import GPT
from .optim import build_optimizer
from .runtime import autocast, resolve_device, resolve_dtype
from .tokenizers import TokenizerUnavailable


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


def measure_decoding(model, prompt: torch.Tensor, new_tokens: int, vocab_limit: int | None = None,
                     repeats: int = 3) -> dict:
    """Greedy decoding of prompt (1, T) with and without the cache: the best of `repeats` runs of each, in new
    tokens/s (the two paths alternate, so a slow spell of the machine hits both), and whether their tokens agree."""
    generate(model, prompt, 8, temperature=0, vocab_limit=vocab_limit)  # warm-up: first calls allocate
    best = {True: float("inf"), False: float("inf")}
    outputs = {}
    for _ in range(repeats):
        for use_cache in (True, False):
            start = time.perf_counter()
            outputs[use_cache] = generate(model, prompt, new_tokens, temperature=0, use_cache=use_cache,
                                          vocab_limit=vocab_limit)
            best[use_cache] = min(best[use_cache], time.perf_counter() - start)
    return {"cache": new_tokens / best[True], "no_cache": new_tokens / best[False],
            "speedup": best[False] / best[True], "identical": torch.equal(outputs[True], outputs[False])}


def _decode(args) -> None:
    device = resolve_device(args.device)
    if args.ckpt:
        model, tokenizer, _ = load_model(args.ckpt, device)
        vocab_limit = None if tokenizer is None else tokenizer.vocab_size
        name = str(args.ckpt)
    else:
        torch.manual_seed(0)
        cfg = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                        n_head=args.n_head, n_embd=args.n_embd)
        model, vocab_limit = GPT(cfg).to(device), None
        name = f"random weights, {cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} wide"
    dtype = resolve_dtype(device, args.dtype)
    model.to(dtype)
    cfg = model.config
    print(f"{name}: {model.num_parameters():,} parameters, context {cfg.block_size}, vocabulary {cfg.vocab_size}")
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {str(dtype).removeprefix('torch.')}, "
          f"{args.new_tokens} new tokens, batch 1, greedy")
    ids = torch.Generator().manual_seed(0)
    for prompt_tokens in args.prompt_tokens:
        prompt = torch.randint(vocab_limit or cfg.vocab_size, (1, prompt_tokens), generator=ids).to(device)
        r = measure_decoding(model, prompt, args.new_tokens, vocab_limit)
        print(f"prompt {prompt_tokens:5d} tokens: with cache {r['cache']:8,.1f} tokens/s, without {r['no_cache']:8,.1f}, "
              f"speed-up {r['speedup']:4.1f}x, tokens {'identical' if r['identical'] else 'DIFFER'}")


def _train(args) -> None:
    cfg = GPTConfig(vocab_size=args.vocab_size, block_size=args.block_size, n_layer=args.n_layer,
                    n_head=args.n_head, n_embd=args.n_embd)
    r = measure_training(cfg, args.batch_size, steps=args.steps, device=args.device, dtype=args.dtype)
    print(f"shape: {args.n_layer} layers, {args.n_head} heads, {args.n_embd} wide, context {args.block_size}, "
          f"batch {args.batch_size}, vocab {args.vocab_size} ({r['parameters']:,} parameters)")
    print(f"device {r['device']} ({r['threads']} threads), dtype {r['dtype']}: {r['step_ms']:.1f} ms/step, "
          f"{r['tokens_per_s']:,.0f} training tokens/s, {r['tflops'] * 1e3:.1f} GFLOP/s")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tinylm.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["train", "decode"])
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=65)
    parser.add_argument("--batch-size", type=int, default=12, help="train only")
    parser.add_argument("--steps", type=int, default=50, help="train only")
    parser.add_argument("--ckpt", help="decode only: a checkpoint file or run folder instead of a random shape")
    parser.add_argument("--new-tokens", type=int, default=500, help="decode only")
    parser.add_argument("--prompt-tokens", type=int, nargs="+", default=[1], help="decode only: one run per length")
    parser.add_argument("--device")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    args = parser.parse_args(argv)
    if args.what == "decode":
        _decode(args)
    else:
        _train(args)


if __name__ == "__main__":
    run_cli(main, (CheckpointError, TokenizerUnavailable, ValueError, OSError))
