"""Where and how a run executes: the profile, the device, and the arithmetic precision.

Every notebook and CLI run picks one of three profiles so that the same code path serves CI, a
laptop and a big GPU:

- ``smoke``: seconds, tiny shapes; what CI runs.
- ``cpu``: a few minutes on a 2-core laptop, and the model must really learn.
- ``gpu``: the full recipe.

The default is ``gpu`` when CUDA is present, else ``cpu``; ``TINYLM_PROFILE`` overrides the default
and an explicit argument overrides both. Precision follows the hardware: bf16 autocast where the
GPU supports it, fp16 autocast with a GradScaler on older CUDA GPUs (T4, V100), and plain fp32 on
CPU, where bf16 matmuls are usually slower than fp32 ones.
"""

from __future__ import annotations

import contextlib
import itertools
import os

import torch

PROFILES = ("smoke", "cpu", "gpu")


def resolve_profile(profile: str | None = None) -> str:
    """The profile to use: the argument, else $TINYLM_PROFILE, else 'gpu' with CUDA and 'cpu' without."""
    chosen = profile or os.environ.get("TINYLM_PROFILE") or ("gpu" if torch.cuda.is_available() else "cpu")
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise ValueError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)} (argument or TINYLM_PROFILE)")
    return chosen


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The argument if given, else the first CUDA GPU, else Apple's MPS, else the CPU.

    A device this machine lacks is a ValueError now, with what to use instead, rather than a failure
    deep inside the first `.to(device)` after the data was prepared.
    """
    if device:
        return _available_device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _available_device(name: str | torch.device) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:  # torch lists twenty device types, most of which no course machine has
        raise ValueError(f"unknown device {str(name)!r}; use cpu, cuda, cuda:N or mps "
                         "(or leave the device out to use the best one available)") from None
    instead = "use cpu, or leave the device out to use the best one available"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "PyTorch sees no CUDA GPU here"
            raise ValueError(f"device {str(name)!r}: {why}; {instead}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"device {str(name)!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                             f"cuda:{count - 1}; pick one of those, or {instead}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(name)!r}: Apple's MPS is not available here; {instead}")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights live (the CPU for a model without any)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


def resolve_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """The autocast dtype for `device`; 'auto' means bf16 > fp16 on CUDA and fp32 elsewhere."""
    if requested != "auto":
        dtype = getattr(torch, requested)
        if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU has no bfloat16 support; use dtype 'float16' (or 'auto')")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype):
    """A mixed-precision context for the forward pass; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device, dtype: torch.dtype) -> bool:
    """fp16 has too little exponent range for small gradients, so its loss is scaled up; bf16 and fp32 need no scaling."""
    return device.type == "cuda" and dtype == torch.float16


# Dense bf16/fp16 tensor-core peaks from the vendors' datasheets (FLOP/s, no sparsity), for MFU.
PEAK_TFLOPS_16BIT = {"H200": 989, "H100": 989, "A100": 312, "L40S": 362, "L4": 121, "A10": 125, "V100": 125, "T4": 65}


def peak_flops_per_s(device: torch.device, dtype: torch.dtype) -> float | None:
    """The GPU's peak for 16-bit matmuls (by its name), or None where unknown (CPUs, unlisted GPUs, fp32)."""
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in PEAK_TFLOPS_16BIT.items():
        if key in name:
            return tflops * 1e12
    return None
