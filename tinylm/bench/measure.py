"""Measurements: training throughput (and a race against a plain reference GPT), decoding with and without
the KV cache, and the two BPE trainers.

`measure_training` times full optimizer steps (forward, backward, AdamW) on random tokens after a few warm-up
steps: tokens/s and the achieved FLOP/s (a mixture of experts counts its active parameters).
`compare_with_reference` races tinylm's GPT and AdamW against a plain GPT-2 of the same shape trained with
nanoGPT's AdamW setup (`tinylm.model.reference`), from the same weights on the same batch: both first take two
steps and their losses must agree, then they alternate one step each, and the best round of each counts.
`measure_decoding` generates greedily with the cache (through the fast step of `tinylm.generate.fast`, and walking the
modules) and without it, alternating, and checks that the three give the same tokens.
`measure_bpe_training` times the readable BPE trainer, which recounts every pair after each merge, against the
incremental one, and checks their merges are identical.

Figures depend on the machine and on what else it is doing: measure on a quiet machine, and compare within one
run. `python -m tinylm.bench` prints them for presets and checkpoints; its command line is tinylm/cli/bench.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from ..config import GPT2_124M, LLAMA2C_STORIES15M, GPTConfig, TrainConfig
from ..generate.decode import generate
from ..model.gpt import GPT
from ..model.reference import ReferenceGPT, reference_optimizer
from ..runtime import autocast, resolve_device, resolve_dtype
from ..tokenizers.bpe import train_bpe, train_bpe_incremental
from ..train.optim import build_optimizer
from ..train.recipes import TINYSTORIES

TINYSTORIES_CPU_SHAPE, TINYSTORIES_CPU_TRAINING = TINYSTORIES.recipes["cpu"]
PRESETS = {  # the shapes `python -m tinylm.bench` and scripts/step_breakdown.py measure
    "nanogpt-cpu": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # The 6,872 GPT-2 tokens the TinyStories sample uses (TrimmedBPETokenizer), padded to a multiple of 64.
    "tinystories-cpu": TINYSTORIES_CPU_SHAPE.config(vocab_size=6912),
    "gpt2-124m": GPT2_124M,
    "stories15m": LLAMA2C_STORIES15M,
}
BATCH_SIZES = {"nanogpt-cpu": 12, "tinystories-cpu": TINYSTORIES_CPU_TRAINING.batch_size}  # 12 for the others


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


def random_batch(model_cfg: GPTConfig, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (batch_size, model_cfg.block_size)
    return (torch.randint(model_cfg.vocab_size, shape, device=device),
            torch.randint(model_cfg.vocab_size, shape, device=device))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def interleaved_seconds(runs: dict[str, Callable[[], object]], rounds: int,
                        device: torch.device = torch.device("cpu")) -> dict[str, list[float]]:
    """Each run's seconds in every round, one call of each per round, the order swapping from round to round, so
    that a slow spell of a shared machine hits all of them alike."""
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(rounds):
        for name in (list(runs) if round_ % 2 == 0 else list(runs)[::-1]):
            _synchronize(device)
            start = time.perf_counter()
            runs[name]()
            _synchronize(device)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def measure_training(model_cfg: GPTConfig, batch_size: int, steps: int = 30, warmup: int = 5,
                     device: str | None = None, dtype: str = "auto") -> dict:
    device = resolve_device(device)
    torch_dtype = resolve_dtype(device, dtype)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
    one_step = training_step(model, optimizer, *random_batch(model_cfg, batch_size, device), device, torch_dtype)
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
    batch = random_batch(model_cfg, batch_size, device)
    steps = {
        "tinylm": training_step(model, build_optimizer(model, train_cfg, device), *batch, device, torch_dtype),
        "reference": training_step(reference, reference_optimizer(reference, train_cfg.learning_rate,
                                                                  (train_cfg.beta1, train_cfg.beta2),
                                                                  train_cfg.weight_decay),
                                   *batch, device, torch_dtype),
    }
    losses = {name: [step().item() for _ in range(loss_steps)] for name, step in steps.items()}  # also the warm-up
    seconds = interleaved_seconds(steps, rounds, device)
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


DECODE_PATHS = {"fast": dict(fast=True), "cache": dict(fast=False), "no_cache": dict(use_cache=False)}


def measure_decoding(model, prompt: torch.Tensor, new_tokens: int, vocab_limit: int | None = None,
                     repeats: int = 3) -> dict:
    """Greedy decoding of prompt (1, T) three ways (`DECODE_PATHS`): with the cache through the fast step ("fast", what
    `generate` does by default), with the cache walking the modules ("cache"), and without the cache ("no_cache").
    Returns the best of `repeats` runs of each in new tokens/s (the paths alternate, so a slow spell of the machine
    hits all three), the speed-ups of the cache and of the fast step, and whether all three gave the same tokens."""
    generate(model, prompt, 8, temperature=0, vocab_limit=vocab_limit)  # warm-up: first calls allocate
    runs = {name: (lambda options=options: generate(model, prompt, new_tokens, temperature=0, vocab_limit=vocab_limit,
                                                    **options)) for name, options in DECODE_PATHS.items()}
    outputs = {name: run() for name, run in runs.items()}
    seconds = {name: min(times) for name, times in interleaved_seconds(runs, repeats).items()}
    first = outputs["fast"]
    return {**{name: new_tokens / s for name, s in seconds.items()}, "speedup": seconds["no_cache"] / seconds["cache"],
            "fast_speedup": seconds["cache"] / seconds["fast"],
            "identical": all(torch.equal(first, output) for output in outputs.values())}
