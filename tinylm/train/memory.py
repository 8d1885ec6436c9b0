"""Where a training step's memory goes, by arithmetic from the config, and the measurement that checks it.

`memory_account` counts, for one eager AdamW step of a GPT, the bytes of the parameters, their gradients, AdamW's two
moments, autocast's half copies of the matrices, and the activations autograd keeps for the backward pass, block by
block (with activation checkpointing: each block's input, and one block rebuilt at a time); `on_rank` keeps each
rank's `Shares` of the first three where a run shards them (tinylm.train.parallel). The step peaks either at
the start of the backward pass, when every activation and the loss's (tokens, vocab) tensors are alive, or at its end,
when every gradient is. `measured_peak` reads the peak bytes of live tensors that the profiler records on the CPU;
a test holds the account within 10% of it. `check_training_memory` raises NotEnoughMemory before the first step,
naming the largest batch that fits; on a CPU it counts what the process holds besides live tensors too
(CPU_HEAP_OVERHEAD, CPU_RUNTIME_BYTES).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch.profiler import ProfilerActivity, profile

from ..config import GPTConfig
from ..errors import TinyLMError

GB = 1e9
CPU_HEAP_OVERHEAD = 1.3  # a CPU step's resident peak over its live activations and logits (glibc's freed blocks)
CPU_RUNTIME_BYTES = 150_000_000  # what a CPU process adds at its first step besides tensors (kernels' buffers, code)


class NotEnoughMemory(TinyLMError, RuntimeError):
    """A training step would need more memory than the device has free."""


def block_activations(config: GPTConfig, half: bool, on_cuda: bool = False) -> dict[str, float]:
    """What autograd keeps of one block for the backward pass, in bytes per token, by what it is. `half`: the
    matrices run in bf16/fp16 under autocast, which keeps the residual stream and the norms in fp32."""
    a = 2 if half else 4  # bytes of a number a matmul makes
    C, H, T, kv = config.n_embd, config.n_head, config.block_size, config.kv_heads * config.head_size
    stats = 4 * (2 if config.norm == "layernorm" else 1)  # per norm: mean and 1/std, or 1/rms
    if config.n_experts:  # each token visits its active experts and the shared ones; routed ones also gather and scale
        hidden = (config.n_experts_active + config.n_shared_experts) * config.expert_hidden_size
        routing = a * (config.n_experts_active * 3 * C + C)
    else:
        hidden, routing = config.mlp_hidden_size, 0
    swiglu = config.mlp == "swiglu"
    # Off CUDA the fused kernel cannot drop attention weights itself and falls back to plain math, in fp32: copies
    # of q, k and v, the (T, T) softmax, its dropout mask and the dropped weights; and the output's copy.
    fallback = config.dropout and config.attention == "flash" and not on_cuda
    rows = {
        "residual stream (the norms' inputs)": 2 * (4 * C + stats),
        # the norms' outputs, as the matmuls read them; autocast casts once per matmul (SwiGLU's two read one)
        "normalised inputs of the matmuls": a * C * (2 + (1 if half and swiglu else 0)),
        "q, k, v": 4 * 3 * C if fallback else a * (C + 2 * kv),
    }
    if fallback:
        rows["attention"] = 4 * 3 * H * T + a * C
    elif config.attention == "flash":  # the fused kernel keeps its output and each row's log-sum-exp
        rows["attention"] = a * C + 4 * H
    else:  # the softmax (with dropout: its mask and the dropped weights), the output with the heads side by side
        rows["attention"] = a * H * T * (3 if config.dropout else 1) + 2 * a * C
    rows["MLP hidden"] = a * hidden * (4 if swiglu else 2) + routing
    if (config.position == "rope" or config.qk_norm) and not fallback:
        rows["q, k rotated or normalised"] = a * (C + kv) + (4 * (H + config.kv_heads) if config.qk_norm else 0)
    if config.kv_heads != config.n_head and not fallback:
        rows["k, v repeated for every query head"] = a * 2 * C
    if config.dropout:  # the masks of the dropouts after attention and after the MLP
        rows["dropout masks"] = 2 * a * C
    return rows


@dataclass(frozen=True)
class Shares:
    """The fraction of the model's weights, gradients and AdamW moments that one rank holds: all of each alone or
    under DDP, 1/N of the moments under ZeRO-1, 1/N of each under FSDP (N ranks)."""

    weights: float = 1.0
    gradients: float = 1.0
    moments: float = 1.0


@dataclass(frozen=True)
class MemoryAccount:
    """The bytes of one training step, by what holds them (see the module docstring)."""

    parameters: int
    gradients: int
    optimizer_state: int  # AdamW's two moments
    autocast_copies: int  # half copies of the matrices, kept from the forward pass to their backward
    embedding: int  # the token ids and, with dropout, its mask
    blocks: tuple[int, ...]  # what each block keeps
    head: int  # the last norm's input, statistics and output
    recompute: int  # activation checkpointing: one block's activations, rebuilt during its backward
    backward_work: int  # a block's backward: gradients of the residual stream, a block's output (SwiGLU: the gate)
    head_gradient: int  # the head's weight gradient, made at the backward's start
    matrix_gradients: int  # the blocks' weight gradients, made one block at a time during the backward
    loss: int  # the (tokens, vocab) tensors at the backward's start: log-softmax, its gradient, the logits'

    @property
    def backward_start(self) -> int:
        """The most the backward pass holds besides the parameters and moments: at its start (every activation,
        the loss's tensors) or, once the loss's tensors are freed, as it reaches the last block or the first (with
        the gradients of the blocks after it made; checkpointed, that block rebuilt)."""
        kept = self.autocast_copies + self.embedding + self.head
        in_a_block = self.recompute + self.backward_work + self.head_gradient
        last = sum(self.blocks) + in_a_block
        first = self.blocks[0] + in_a_block + (len(self.blocks) - 1) * (self.matrix_gradients // len(self.blocks))
        return kept + max(sum(self.blocks) + self.loss, last, first)

    @property
    def peak(self) -> int:
        """The step's peak: parameters and moments, plus the larger of the backward's start and its end."""
        return self.parameters + self.optimizer_state + max(self.backward_start, self.gradients)

    def on_rank(self, shares: Shares) -> MemoryAccount:
        """The account of one rank that holds `shares` of the weights, gradients and moments."""
        return dataclasses.replace(self, parameters=int(self.parameters * shares.weights),
                                   gradients=int(self.gradients * shares.gradients),
                                   optimizer_state=int(self.optimizer_state * shares.moments),
                                   matrix_gradients=int(self.matrix_gradients * shares.gradients))

    def rows(self) -> list[tuple[str, int]]:
        """(what, bytes) from the parameters to the loss, for a table."""
        rows = [("parameters", self.parameters), ("gradients", self.gradients),
                ("AdamW moments", self.optimizer_state), ("autocast's half copies", self.autocast_copies),
                ("embedding", self.embedding)]
        rows += [(f"block {i}", held) for i, held in enumerate(self.blocks)]
        rows += [("last norm", self.head), ("one block rebuilt", self.recompute), ("logits and loss", self.loss),
                 ("a block's backward", self.backward_work)]
        return [(what, held) for what, held in rows if held]


def memory_account(config: GPTConfig, num_parameters: int, batch_size: int, dtype: torch.dtype,
                   checkpointing: bool = False, device_type: str = "cpu") -> MemoryAccount:
    """The account of a training step of a GPT with `config` and `num_parameters` weights at `batch_size` sequences
    of block_size tokens, in `dtype` (float32, or bfloat16/float16 under autocast with fp32 weights) on a
    `device_type` device, with or without activation checkpointing (each block's activations rebuilt in backward),
    on a rank that holds the whole model (`MemoryAccount.on_rank`: a sharded run's rank)."""
    half = dtype in (torch.bfloat16, torch.float16)
    tokens = batch_size * config.block_size
    C, V = config.n_embd, config.vocab_size
    per_block = sum(block_activations(config, half, device_type == "cuda").values()) * tokens
    # a checkpointed block keeps only its input, the residual stream
    kept = 4 * C * tokens if checkpointing else per_block
    embeddings = V * C * (1 if config.tie_weights else 2) + (config.block_size * C if config.position == "learned"
                                                              else 0)
    matrices = num_parameters - embeddings  # the blocks' (and the last norm's), which are multiplied, not looked up
    head_matrix = V * C  # the head multiplies by its matrix, the tied embedding's or its own
    stats = 4 * (2 if config.norm == "layernorm" else 1)
    a = 2 if half else 4
    # At the backward's start the log-softmax's output, its gradient and the logits' gradient: three fp32
    # (tokens, vocab) tensors; or, where the batch is small next to the vocabulary, the logits' gradient and the
    # head's weight gradient.
    loss = max(12 * V * tokens, 4 * V * tokens + 4 * head_matrix)
    return MemoryAccount(
        parameters=4 * num_parameters, gradients=4 * num_parameters, optimizer_state=8 * num_parameters,
        autocast_copies=2 * (matrices + head_matrix) if half else 0,
        embedding=8 * tokens + (4 * C * tokens if config.dropout else 0),  # the ids; dropout's mask
        blocks=(int(kept),) * config.n_layer,
        head=int((4 * C + stats + a * C) * tokens),
        recompute=int(per_block) if checkpointing else 0,
        loss=int(loss),
        backward_work=int((4 * C + a * C + (a * config.mlp_hidden_size if config.mlp == "swiglu" else 0)) * tokens),
        head_gradient=4 * head_matrix, matrix_gradients=4 * matrices)


def measured_peak(step: Callable[[], object], held_before: int, device: torch.device) -> int:
    """The peak bytes of live tensors while `step()` runs: `held_before` (what of it was alive when it began) plus the
    highest total of what the step allocated and had not freed, by the allocator's peak on a CUDA device (less what
    was allocated at the start: other work's tensors do not count) and elsewhere from the profiler's records."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        return held_before + torch.cuda.max_memory_allocated(device) - start
    recorded = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_stderr():  # Kineto, the profiler's engine, writes a line to the process's stderr as it starts
        recorded.start()
    try:
        step()
    finally:
        with _quiet_stderr():  # and as it stops
            recorded.stop()
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        recorded.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    # Each record is an allocation (+bytes) or a free (-bytes) on the CPU (device type 0); the running sum is what
    # the step holds beyond what it found. (The records' own running total also counts tensors that earlier
    # profiling allocated and that were freed while nothing was recording.)
    changes = sorted(((event["ts"], event["args"]["Bytes"]) for event in events
                      if event.get("name") == "[memory]" and event["args"].get("Device Type") == 0),
                     key=lambda change: change[0])  # in time order; a tie keeps the order recorded
    totals = list(itertools.accumulate(change for _, change in changes))
    return held_before + max(totals, default=0)


@contextlib.contextmanager
def _quiet_stderr():
    """The process's standard error (file descriptor 2, where C++ libraries write) sent to /dev/null meanwhile."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def held_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer, *tensors: torch.Tensor) -> int:
    """The bytes a model, its optimizer's state and `tensors` hold between steps, each storage counted once."""
    state = [value for per_parameter in optimizer.state.values() for value in per_parameter.values()
             if torch.is_tensor(value)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
                for t in [*model.parameters(), *model.buffers(), *state, *tensors] if t.device.type != "meta"}
    return sum(storages.values())


@dataclass(frozen=True)
class StepMemory:
    """Bytes one training step needs: `weights` whatever the batch, `per_sequence` per sequence of a micro-batch."""

    weights: int
    per_sequence: int

    def total(self, batch_size: int) -> int:
        return self.weights + batch_size * self.per_sequence


def step_memory(config: GPTConfig, num_parameters: int, dtype: torch.dtype, device_type: str = "cpu",
                checkpointing: bool = False, shares: Shares = Shares()) -> StepMemory:
    """The account's peak, or a little over it, as a part per sequence and a part without; on a CPU with the process's
    overheads too."""
    one, two = (memory_account(config, num_parameters, n, dtype, checkpointing, device_type).on_rank(shares)
                for n in (1, 2))
    per_sequence = two.backward_start - one.backward_start
    weights = one.parameters + one.optimizer_state + max(one.gradients, one.backward_start - per_sequence)
    on_cpu = device_type == "cpu"
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
                          processes: int = 1, shares: Shares = Shares(), advice: Callable[[int], str] | None = None,
                          longest: int | None = None) -> None:
    """Raise NotEnoughMemory if a training step of `model` (already on `device`, its blocks rebuilt in backward where
    it checkpoints them) at `batch_size` sequences per micro-batch needs more than `device` has free. `processes`:
    the run's processes, which all share the memory of a CPU (each GPU is one process's). `shares`: what each rank
    holds of the weights, gradients and moments. `advice`: what to do, given the largest batch that fits (>= 1); by
    default a --batch-size. `longest`: the longest sequence the run trains on, where it is shorter than the context
    (conversations)."""
    free = free_memory(device)
    if free is None:
        return
    processes = processes if device.type == "cpu" else 1
    checkpointing = any(getattr(module, "activation_checkpointing", False) for module in model.modules())
    config = model.config if longest is None else dataclasses.replace(model.config, block_size=min(
        longest, model.config.block_size))
    need = step_memory(config, sum(p.numel() for p in model.parameters()), dtype, device.type, checkpointing, shares)
    # on the device already, so not in `free` (a sharded parameter counts its whole size: its share of it is held)
    held = int(sum(p.numel() * p.element_size() for p in model.parameters()) * shares.weights)
    available = free // processes + held
    if need.total(batch_size) <= available:
        return
    fits = (available - need.weights) // need.per_sequence
    where = "the CPU" if device.type == "cpu" else f"the GPU ({device})"
    share = f" for each of {processes} processes" if processes > 1 else ""
    if fits < 1:
        advice = "even one sequence does not fit: use a smaller model or a shorter context (block_size)"
    else:
        advice = (advice or (lambda n: f"use a batch size of at most {n:,} (--batch-size {n}, with --set "
                             f"grad_accum_steps={-(-batch_size // n)} to keep the optimizer's batch), or a smaller "
                             "model"))(fits)
    raise NotEnoughMemory(
        f"one training step needs about {need.total(batch_size) / GB:.1f} GB ({need.weights / GB:.1f} GB for the model "
        f"and its optimizer, {batch_size * need.per_sequence / GB:.1f} GB for a micro-batch of {batch_size:,} "
        f"sequences of {config.block_size:,} tokens), more than the "
        f"{available / GB:.1f} GB {where} has{share}; {advice}")
