"""How much memory a training step needs, by arithmetic from the config, checked before the first step.

A batch far too large for the machine should be a message, not a process the OOM killer ends after minutes of
swapping. `step_memory` counts what one eager optimizer step of a GPT holds at its peak, the start of the backward
pass: per parameter the weight, its gradient, AdamW's moments and autocast's copy; per token the activations kept
block by block; per logit the logits, their log-softmax and gradients. On a CPU the batch's share counts
CPU_HEAP_OVERHEAD times (freed blocks the allocator keeps), plus CPU_RUNTIME_BYTES; a test holds the estimate within
a factor of 2 of a real step's peak. `check_training_memory` raises NotEnoughMemory, naming the largest batch that
fits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..config import GPTConfig
from ..errors import TinyLMError

GB = 1e9
CPU_HEAP_OVERHEAD = 1.3  # a CPU step's resident peak over its live activations and logits (glibc's freed blocks)
CPU_RUNTIME_BYTES = 150_000_000  # what a CPU process adds at its first step besides tensors (kernels' buffers, code)


class NotEnoughMemory(TinyLMError, RuntimeError):
    """A training step would need more memory than the device has free."""


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step needs: `weights` whatever the batch, `per_sequence` per sequence of a micro-batch."""

    weights: int
    per_sequence: int

    def total(self, batch_size: int) -> int:
        return self.weights + batch_size * self.per_sequence


def _bytes_per_token(config: GPTConfig, half: bool, on_cuda: bool) -> float:
    """The activations, gradients and logits of one token at the step's peak (see the module docstring)."""
    act = 2 if half else 4  # bytes of a matmul's output; the residual stream and the norms stay fp32 under autocast
    C, H, T = config.n_embd, config.n_head, config.block_size
    kv = config.kv_heads * config.head_size
    if config.n_experts:  # each token visits its active experts and the shared ones; routed ones also gather and scale
        hidden = (config.n_experts_active + config.n_shared_experts) * config.expert_hidden_size
        routing = config.n_experts_active * 3 * C + C  # a routed input's copy, output and weighted output; the sum
    else:
        hidden, routing = config.mlp_hidden_size, 0
    # Per block, in the activation dtype: q, k and v (one buffer); attention's output and its heads-side-by-side
    # copy; the rotated q and k (RoPE); k and v repeated for every query head (GQA); the MLP's hidden values (GELU:
    # before and after; SwiGLU: gate, silu, up, product); autocast's half copies of the norms' outputs (SwiGLU's
    # two matrices cast theirs apart); the masks of the dropouts after attention and after the MLP.
    matrix_inputs = 3 if config.mlp == "swiglu" else 2
    values = (C + 2 * kv) + 2 * C + routing + (4 if config.mlp == "swiglu" else 2) * hidden
    values += (C + kv if config.position == "rope" else 0) + (2 * C if config.kv_heads != H else 0)
    values += (matrix_inputs * C if half else 0) + (2 * C if config.dropout else 0)
    # The (T, T) attention weights per head where they are materialised: the explicit path keeps its softmax (and
    # with dropout the mask and the dropped weights); the fused kernel falls back to plain math where it cannot apply
    # dropout itself (off CUDA) and keeps four such tensors.
    if config.attention == "explicit":
        values += H * T * (3 if config.dropout else 1)
    elif config.dropout and not on_cuda:
        values += H * T * 4
    per_block = act * values + 2 * 4 * C + (0 if half else 4 * matrix_inputs * C)  # + residual stream, fp32 norms
    ends = act * C + 2 * 8  # the last norm's output, as the head reads it; the batch's ids and targets
    # The backward pass peaks at its start, holding per logit the logits, their fp32 log-softmax and two fp32
    # gradients, or in the last block, holding its gradients, whichever is more.
    loss = ((2 if half else 4) + 4 + 2 * 4) * config.vocab_size
    backward = act * (2 * hidden + 4 * C)
    return config.n_layer * per_block + ends + max(loss, backward)


def step_memory(config: GPTConfig, num_parameters: int, dtype: torch.dtype, device_type: str = "cpu") -> StepMemory:
    """The bytes of one training step of a GPT with `config` and `num_parameters` weights, trained in `dtype`
    (float32, or bfloat16/float16 under autocast with fp32 weights) on a `device_type` ("cpu", "cuda", ...) device."""
    half = dtype in (torch.bfloat16, torch.float16)
    on_cpu = device_type == "cpu"
    per_sequence = _bytes_per_token(config, half, device_type == "cuda") * config.block_size
    weights = (16 + (2 if half else 0)) * num_parameters  # weight, gradient, AdamW's moments; autocast's half copy
    return StepMemory(weights=weights + (CPU_RUNTIME_BYTES if on_cpu else 0),
                      per_sequence=int(per_sequence * (CPU_HEAP_OVERHEAD if on_cpu else 1)))


def free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give: MemAvailable for the CPU (Linux), the free memory of a CUDA GPU; None where
    this cannot be known (other systems, other devices)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    meminfo = Path("/proc/meminfo")
    if device.type == "cpu" and meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # kB
    return None


def check_training_memory(model: torch.nn.Module, batch_size: int, device: torch.device, dtype: torch.dtype,
                          processes: int = 1, advice: Callable[[int], str] | None = None) -> None:
    """Raise NotEnoughMemory if a training step of `model` (already on `device`) at `batch_size` sequences per
    micro-batch needs more than `device` has free. `processes`: how many processes of the run share that memory
    (every process of a run on the CPU; one per GPU). `advice`: what to do, given the largest batch that fits (>= 1);
    by default a --batch-size."""
    free = free_memory(device)
    if free is None:
        return
    need = step_memory(model.config, sum(p.numel() for p in model.parameters()), dtype, device.type)
    held = sum(p.numel() * p.element_size() for p in model.parameters())  # on the device already: not in `free`
    available = free // processes + held
    if need.total(batch_size) <= available:
        return
    fits = (available - need.weights) // need.per_sequence
    where = "the CPU" if device.type == "cpu" else f"the GPU ({device})"
    share = f" for each of {processes} processes" if processes > 1 else ""
    if fits < 1:
        advice = "even one sequence does not fit: use a smaller model or a shorter context (block_size)"
    else:
        advice = (advice or (lambda n: f"use a batch size of at most {n:,} (--batch-size {n}), or a smaller model"))(
            fits)
    raise NotEnoughMemory(
        f"one training step needs about {need.total(batch_size) / GB:.1f} GB ({need.weights / GB:.1f} GB for the model "
        f"and its optimizer, {batch_size * need.per_sequence / GB:.1f} GB for a micro-batch of {batch_size:,} "
        f"sequences of {model.config.block_size:,} tokens), more than the "
        f"{available / GB:.1f} GB {where} has{share}; {advice}")
