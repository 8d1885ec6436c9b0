"""Command line: measure training throughput, decoding with and without the KV cache, the cache's size, BPE training.

    python -m tinylm.bench train [--preset nanogpt-cpu] [--arch gpt2|llama|llama-moe] [shape options] [--batch-size 12]
        [--reference [--rounds 30]]
    python -m tinylm.bench decode [--ckpt runs/shakespeare-char-cpu | --preset stories15m ...] [--new-tokens 500]
        [--prompt-tokens 1 200] [--dtype bfloat16]
    python -m tinylm.bench cache --preset gpt2-124m [--n-kv-head 4] [--dtype bfloat16]
    python -m tinylm.bench bpe [--merges 500] [--repeats 3]

A shape is a preset (nanoGPT's CPU shape for shakespeare-char by default; `tinystories-cpu`, the
tinystories track's cpu recipe with its 6,912-token vocabulary; `gpt2-124m`; `stories15m`, llama2.c's
15M TinyStories Llama), built as the block family --arch if given (tinylm.config.ARCHITECTURES), with
any shape option (--n-layer, --n-head, --n-kv-head, --n-embd, --mlp-hidden, --block-size, --vocab-size)
replacing the preset's value. The batch defaults to the recipe's (12 where the preset has none).

`train` times full optimizer steps (forward, backward, AdamW) on random tokens after a few warm-up
steps and prints tokens/s and the achieved FLOP/s (a mixture of experts counts its active parameters).
It first lets the process keep the memory it frees (`tinylm.runtime.keep_freed_memory`), so that each
step's big tensors are reused instead of page-faulted in again.
With --reference it races tinylm's GPT and AdamW against a plain GPT-2 of the same shape trained with
nanoGPT's AdamW setup (`tinylm.reference_gpt`), from the same weights on the same batch: both first
take two steps and their losses must agree, then they alternate one step each for --rounds rounds,
and the best round of each gives its tokens/s.

`decode` generates greedily from a batch of one prompt (random ids; a checkpoint's weights, or
random weights for a shape) with the cache and without it, three times each, and prints the best
speed of each (new tokens per second, prefill included), the speed-up, and whether the tokens are
identical, and the cache's bytes per token.

`cache` prints the KV cache's bytes per token and for a full context (grouped-query attention stores
n_kv_head heads instead of n_head), without building the model.

`bpe` learns --merges merges on the TinyStories sample with the readable trainer, which recounts every
pair after each merge (`tinylm.bpe.train_bpe`), and with the incremental one
(`train_bpe_incremental`), alternating, and prints the best of --repeats runs of each, the speed-up,
and whether their merges are identical.

Figures depend on the machine and on what else it is doing: run it on a quiet machine, and compare
within one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from .bpe import train_bpe, train_bpe_incremental
from .checkpoint import load_model
from .config import ARCHITECTURES, GPT2_124M, LLAMA2C_STORIES15M, GPTConfig, TrainConfig, with_architecture
from .console import HelpFormatter, examples
from .corpora import TINYSTORIES_SAMPLE, default_folder
from .download import fetch
from .errors import run_cli
from .generate import generate
from .kv_cache import bytes_per_token
from .model import GPT
from .optim import build_optimizer
from .reference_gpt import ReferenceGPT, reference_optimizer
from .runtime import autocast, keep_freed_memory, resolve_device, resolve_dtype
from .tracks import TINYSTORIES

TINYSTORIES_CPU_MODEL, TINYSTORIES_CPU_TRAINING = TINYSTORIES.recipes["cpu"]
PRESETS = {
    "nanogpt-cpu": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # The 6,872 GPT-2 tokens the TinyStories sample uses (TrimmedBPETokenizer), padded to a multiple of 64.
    "tinystories-cpu": dataclasses.replace(TINYSTORIES_CPU_MODEL, vocab_size=6912),
    "gpt2-124m": GPT2_124M,
    "stories15m": LLAMA2C_STORIES15M,
}
BATCH_SIZES = {"nanogpt-cpu": 12, "tinystories-cpu": TINYSTORIES_CPU_TRAINING.batch_size}  # 12 for the others
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


def training_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, device: torch.device, dtype: torch.dtype):
    """One optimizer step on the batch (x, y) as a function of no arguments; it returns the loss."""
    def step() -> torch.Tensor:
        with autocast(device, dtype):
            _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def _random_batch(model_cfg: GPTConfig, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (batch_size, model_cfg.block_size)
    return (torch.randint(model_cfg.vocab_size, shape, device=device),
            torch.randint(model_cfg.vocab_size, shape, device=device))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure_training(model_cfg: GPTConfig, batch_size: int, steps: int = 30, warmup: int = 5,
                     device: str | None = None, dtype: str = "auto") -> dict:
    device = resolve_device(device)
    torch_dtype = resolve_dtype(device, dtype)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
    one_step = training_step(model, optimizer, *_random_batch(model_cfg, batch_size, device), device, torch_dtype)
    for _ in range(warmup):
        one_step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        one_step()
    _synchronize(device)
    seconds = (time.perf_counter() - start) / steps
    tokens = batch_size * model_cfg.block_size
    return {"parameters": model.num_parameters(), "active_parameters": model.num_active_parameters(),
            "step_ms": seconds * 1e3, "tokens_per_s": tokens / seconds,
            "tflops": model.flops_per_token() * tokens / seconds / 1e12, "device": str(device),
            "dtype": str(torch_dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


def compare_with_reference(model_cfg: GPTConfig, batch_size: int, rounds: int = 30, loss_steps: int = 2,
                           device: str | None = None, dtype: str = "auto") -> dict:
    """tinylm's GPT with its AdamW against `ReferenceGPT` with nanoGPT's, from the same weights on the same batch.

    Each first takes `loss_steps` steps and records its losses (from the second on they follow AdamW updates,
    so they check the gradients and the optimizers too). Then every round times one step of each, the order
    swapping from round to round, so that a slow spell of a shared machine hits both; the best round counts.
    Returns tokens/s and ms per step of each ("tinylm", "reference"), their ratio (best rounds, and the median
    round as a measure of the noise), and both lists of losses.
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(device, dtype)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    reference = ReferenceGPT(model_cfg).to(device)
    reference.load_state_dict(model.state_dict())  # GPT-2's parameter names on both sides: same weights, key for key
    train_cfg = TrainConfig(batch_size=batch_size)
    batch = _random_batch(model_cfg, batch_size, device)
    steps = {
        "tinylm": training_step(model, build_optimizer(model, train_cfg, device), *batch, device, torch_dtype),
        "reference": training_step(reference, reference_optimizer(reference, train_cfg.learning_rate,
                                                                  (train_cfg.beta1, train_cfg.beta2),
                                                                  train_cfg.weight_decay),
                                   *batch, device, torch_dtype),
    }
    losses = {name: [step().item() for _ in range(loss_steps)] for name, step in steps.items()}  # also the warm-up
    seconds: dict[str, list[float]] = {name: [] for name in steps}
    for round_ in range(rounds):
        for name in (steps if round_ % 2 == 0 else reversed(steps)):
            _synchronize(device)
            start = time.perf_counter()
            steps[name]()
            _synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    tokens = batch_size * model_cfg.block_size
    best = {name: min(times) for name, times in seconds.items()}
    median = {name: sorted(times)[len(times) // 2] for name, times in seconds.items()}
    return {"tokens_per_s": {name: tokens / s for name, s in best.items()},
            "step_ms": {name: s * 1e3 for name, s in best.items()},
            "ratio": best["reference"] / best["tinylm"], "median_ratio": median["reference"] / median["tinylm"],
            "losses": losses, "parameters": model.num_parameters(), "device": str(device),
            "dtype": str(torch_dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


def measure_bpe_training(text: str, num_merges: int, repeats: int = 3) -> dict:
    """Seconds of the recounting and the incremental BPE trainer on `text` (best of `repeats`, alternating)."""
    best = {train_bpe: float("inf"), train_bpe_incremental: float("inf")}
    merges = {}
    for _ in range(repeats):
        for trainer in best:
            start = time.perf_counter()
            merges[trainer] = list(trainer(text, num_merges)[0].items())
            best[trainer] = min(best[trainer], time.perf_counter() - start)
    return {"recount_s": best[train_bpe], "incremental_s": best[train_bpe_incremental],
            "speedup": best[train_bpe] / best[train_bpe_incremental], "merges": len(merges[train_bpe]),
            "identical": merges[train_bpe] == merges[train_bpe_incremental]}


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
        print(f"prompt {prompt_tokens:5d} tokens: with cache {r['cache']:8,.1f} tokens/s, "
              f"without {r['no_cache']:8,.1f}, "
              f"speed-up {r['speedup']:4.1f}x, tokens {'identical' if r['identical'] else 'DIFFER'}")


def _require_positive(args, *names: str) -> None:
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")


def _train(args) -> None:
    _require_positive(args, "batch_size", "steps", "rounds")
    keep_freed_memory()  # as training does: big tensors are reused, not faulted in again every step
    cfg = shape_from_args(args)
    batch_size = args.batch_size or BATCH_SIZES.get(args.preset, 12)
    if args.reference:
        _train_against_reference(cfg, batch_size, args)
        return
    r = measure_training(cfg, batch_size, steps=args.steps, device=args.device, dtype=args.dtype)
    active = f", {r['active_parameters']:,} active per token" if r["active_parameters"] != r["parameters"] else ""
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size} "
          f"({r['parameters']:,} parameters{active})")
    print(f"device {r['device']} ({r['threads']} threads), dtype {r['dtype']}: {r['step_ms']:.1f} ms/step, "
          f"{r['tokens_per_s']:,.0f} training tokens/s, {r['tflops'] * 1e3:.1f} GFLOP/s")


def _train_against_reference(cfg: GPTConfig, batch_size: int, args) -> None:
    r = compare_with_reference(cfg, batch_size, rounds=args.rounds, device=args.device, dtype=args.dtype)
    print(f"shape: {describe_shape(cfg)}, context {cfg.block_size}, batch {batch_size}, vocab {cfg.vocab_size} "
          f"({r['parameters']:,} parameters)")
    print(f"device {r['device']} ({r['threads']} threads), dtype {r['dtype']}, one step of each per round, "
          f"best of {args.rounds} rounds:")
    names = {"tinylm": "tinylm GPT, tinylm.optim AdamW", "reference": "reference GPT, nanoGPT's AdamW setup"}
    for name, label in names.items():
        print(f"  {label:38s} {r['tokens_per_s'][name]:9,.0f} tokens/s  {r['step_ms'][name]:8.2f} ms/step")
    print(f"  tinylm / reference: {r['ratio']:.2f}x (median round {r['median_ratio']:.2f}x)")
    tinylm_losses, reference_losses = r["losses"]["tinylm"], r["losses"]["reference"]
    gap = max(abs(a - b) for a, b in zip(tinylm_losses, reference_losses))
    agree = gap <= 1e-4 * max(map(abs, reference_losses))
    print(f"losses of the first {len(tinylm_losses)} steps from the same weights: tinylm "
          f"{' '.join(f'{x:.6f}' for x in tinylm_losses)}, reference {' '.join(f'{x:.6f}' for x in reference_losses)} "
          f"(largest difference {gap:.1e}): {'equal' if agree else 'DIFFERENT'}")


def _bpe(args) -> None:
    _require_positive(args, "merges", "repeats")
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
    dtype = resolve_dtype(resolve_device(args.device), args.dtype)
    print(f"shape: {describe_shape(cfg)}, head size {cfg.head_size}")
    print(f"{_cache_size(cfg, dtype)}: 2 (keys and values) x {cfg.n_layer} layers x {cfg.kv_heads} heads x "
          f"{cfg.head_size} x {dtype.itemsize} bytes")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.bench", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.bench train --arch llama --batch-size 12",
                        "python -m tinylm.bench train --preset tinystories-cpu --reference --rounds 20",
                        "python -m tinylm.bench decode --preset stories15m --prompt-tokens 1 200 --new-tokens 200",
                        "python -m tinylm.bench cache --preset gpt2-124m --n-kv-head 4 --dtype bfloat16",
                        "python -m tinylm.bench bpe --merges 500"))
    parser.add_argument("what", choices=["train", "decode", "cache", "bpe"], help="what to measure")
    parser.add_argument("--preset", choices=list(PRESETS), default="nanogpt-cpu", help="the shape to start from")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), help="block family (default: the preset's own)")
    for name in (*SHAPE_OPTIONS, "n_kv_head"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, help="replaces the preset's value "
                            "(default: the preset's)")
    parser.add_argument("--batch-size", type=int, help="train only (default: the preset's recipe, else 12)")
    parser.add_argument("--steps", type=int, default=50, help="train only")
    parser.add_argument("--reference", action="store_true", help="train only: race a plain GPT-2 of the same shape "
                        "trained with nanoGPT's AdamW setup (tinylm.reference_gpt)")
    parser.add_argument("--rounds", type=int, default=30, help="train --reference only: alternating rounds")
    parser.add_argument("--ckpt", help="decode only: a checkpoint file or run folder instead of a random shape "
                        "(default: random weights of the shape)")
    parser.add_argument("--new-tokens", type=int, default=500, help="decode only")
    parser.add_argument("--prompt-tokens", type=int, nargs="+", default=[1], help="decode only: one run per length")
    parser.add_argument("--merges", type=int, default=500, help="bpe only")
    parser.add_argument("--repeats", type=int, default=3, help="bpe only: runs of each trainer")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: bf16 or fp16 on CUDA, fp32 elsewhere")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    {"train": _train, "decode": _decode, "cache": _cache, "bpe": _bpe}[args.what](args)


def cli(argv=None) -> None:
    """`python -m tinylm.bench`: main(), its anticipated errors one line each (tinylm.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
