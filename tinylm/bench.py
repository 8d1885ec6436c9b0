"""Command line: measure training throughput, decoding speed with and without the KV cache, or the cache's size.

    python -m tinylm.bench train [--preset nanogpt-cpu] [--arch gpt2|llama|llama-moe] [shape options] [--batch-size 12]
    python -m tinylm.bench decode [--ckpt runs/shakespeare-char-cpu | --preset stories15m ...] [--new-tokens 500]
        [--prompt-tokens 1 200] [--dtype bfloat16]
    python -m tinylm.bench cache --preset gpt2-124m [--n-kv-head 4] [--dtype bfloat16]

A shape is a preset (nanoGPT's CPU shape for shakespeare-char by default; `gpt2-124m`; `stories15m`,
llama2.c's 15M TinyStories Llama), built as the block family --arch if given (tinylm.config.ARCHITECTURES),
with any shape option (--n-layer, --n-head, --n-kv-head, --n-embd, --mlp-hidden, --block-size, --vocab-size)
replacing the preset's value.

`train` times full optimizer steps (forward, backward, AdamW) on random tokens after a few warm-up
steps and prints tokens/s and the achieved FLOP/s (a mixture of experts counts its active parameters).

`decode` generates greedily from a batch of one prompt (random ids; a checkpoint's weights, or
random weights for a shape) with the cache and without it, three times each, and prints the best
speed of each (new tokens per second, prefill included), the speed-up, and whether the tokens are
identical, and the cache's bytes per token.

`cache` prints the KV cache's bytes per token and for a full context (grouped-query attention stores
n_kv_head heads instead of n_head), without building the model.

Figures depend on the machine and on what else it is doing: run it on a quiet machine, and compare
within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from .checkpoint import load_model
from .config import ARCHITECTURES, GPT2_124M, LLAMA2C_STORIES15M, GPTConfig, TrainConfig, with_architecture
from .console import HelpFormatter, examples
from .errors import run_cli
from .generate import generate
from .kv_cache import bytes_per_token
from .model import GPT
from .optim import build_optimizer
from .runtime import autocast, resolve_device, resolve_dtype

PRESETS = {
    "nanogpt-cpu": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    "gpt2-124m": GPT2_124M,
    "stories15m": LLAMA2C_STORIES15M,
}
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
    return {"parameters": model.num_parameters(), "active_parameters": model.num_active_parameters(),
            "step_ms": seconds * 1e3, "tokens_per_s": tokens / seconds,
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


def _parameters(model) -> str:
    total, active = model.num_parameters(), model.num_active_parameters()
    return f"{total:,} parameters" + (f" ({active:,} active per token)" if active != total else "")


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
    too_long = [n for n in args.prompt_tokens if n >= cfg.block_size]
    if too_long:  # longer prompts are cropped to the context, so they would time something else than asked
        raise ValueError(f"--prompt-tokens {' '.join(map(str, too_long))}: a prompt must be shorter than the model's "
                         f"context of {cfg.block_size} tokens; use lengths below {cfg.block_size}")
    dtype = resolve_dtype(device, args.dtype)
    model.to(dtype)
    print(f"{name}: {_parameters(model)}, context {cfg.block_size}, vocabulary {cfg.vocab_size}, "
          f"{_cache_size(cfg, dtype)}")
    print(f"device {device} ({torch.get_num_threads()} threads), dtype {str(dtype).removeprefix('torch.')}, "
          f"{args.new_tokens} new tokens, batch 1, greedy")
    ids = torch.Generator().manual_seed(0)
    for prompt_tokens in args.prompt_tokens:
        prompt = torch.randint(vocab_limit or cfg.vocab_size, (1, prompt_tokens), generator=ids).to(device)
        r = measure_decoding(model, prompt, args.new_tokens, vocab_limit)
        print(f"prompt {prompt_tokens:5d} tokens: with cache {r['cache']:8,.1f} tokens/s, without {r['no_cache']:8,.1f}, "
              f"speed-up {r['speedup']:4.1f}x, tokens {'identical' if r['identical'] else 'DIFFER'}")


def _train(args) -> None:
    cfg = shape_from_args(args)
    r = measure_training(cfg, args.batch_size, steps=args.steps, device=args.device, dtype=args.dtype)
    active = f", {r['active_parameters']:,} active per token" if r["active_parameters"] != r["parameters"] else ""
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {args.batch_size}, vocab {cfg.vocab_size} "
          f"({r['parameters']:,} parameters{active})")
    print(f"device {r['device']} ({r['threads']} threads), dtype {r['dtype']}: {r['step_ms']:.1f} ms/step, "
          f"{r['tokens_per_s']:,.0f} training tokens/s, {r['tflops'] * 1e3:.1f} GFLOP/s")


def _cache(args) -> None:
    cfg = shape_from_args(args)
    dtype = resolve_dtype(resolve_device(args.device), args.dtype)
    print(f"shape: {describe_shape(cfg)}, head size {cfg.head_size}")
    print(f"{_cache_size(cfg, dtype)}: 2 (keys and values) x {cfg.n_layer} layers x {cfg.kv_heads} heads x "
          f"{cfg.head_size} x {dtype.itemsize} bytes")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.bench", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.bench train --arch llama --batch-size 12",
                        "python -m tinylm.bench decode --preset stories15m --prompt-tokens 1 200 --new-tokens 200",
                        "python -m tinylm.bench cache --preset gpt2-124m --n-kv-head 4 --dtype bfloat16"))
    parser.add_argument("what", choices=["train", "decode", "cache"], help="what to measure")
    parser.add_argument("--preset", choices=list(PRESETS), default="nanogpt-cpu", help="the shape to start from")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), help="block family (default: the preset's own)")
    for name in (*SHAPE_OPTIONS, "n_kv_head"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, help="replaces the preset's value "
                            "(default: the preset's)")
    parser.add_argument("--batch-size", type=int, default=12, help="train only")
    parser.add_argument("--steps", type=int, default=50, help="train only")
    parser.add_argument("--ckpt", help="decode only: a checkpoint file or run folder instead of a random shape "
                        "(default: random weights of the shape)")
    parser.add_argument("--new-tokens", type=int, default=500, help="decode only")
    parser.add_argument("--prompt-tokens", type=int, nargs="+", default=[1], help="decode only: one run per length")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: bf16 or fp16 on CUDA, fp32 elsewhere")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    {"train": _train, "decode": _decode, "cache": _cache}[args.what](args)


def cli(argv=None) -> None:
    """`python -m tinylm.bench`: main(), its anticipated errors one line each (tinylm.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
