"""Where and how a run executes: the profile, the device, the arithmetic precision and the process's CPU settings.

Three profiles let one code path serve CI, a laptop and a big GPU: ``smoke`` (seconds, tiny shapes: what CI runs),
``cpu`` (a few minutes on a 2-core laptop, and the model must really learn) and ``gpu`` (the full recipe).
Precision follows the hardware: bf16 autocast where the GPU computes it natively, fp16 with a GradScaler on older
CUDA GPUs, fp32 on a CPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
import os
import platform
import re
import statistics
import time

import torch

from .errors import InputError

PROFILES = ("smoke", "cpu", "gpu")


def cpu_name() -> str:
    """The CPU as a measured figure's caption names it: its model, the cores this process may use and the vector
    instructions PyTorch dispatches to ("<model name>, 2 cores, AVX2")."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            names = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read(), re.M)
        model = names[0].strip() if names else model
    return f"{model}, {usable_cores()} cores, {torch.backends.cpu.get_cpu_capability()}"


def usable_cores() -> int:
    """The cores this process may run on (a container's share, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def resolve_profile(profile: str | None = None, default: str | None = None) -> str:
    """The profile to use: the argument, else $TINYLM_PROFILE, else `default` where given (a command whose work
    exists for some profiles only), else 'gpu' with CUDA and 'cpu' without."""
    chosen = profile or os.environ.get("TINYLM_PROFILE") or default or ("gpu" if torch.cuda.is_available() else "cpu")
    chosen = chosen.strip().lower()
    if chosen not in PROFILES:
        raise InputError(f"unknown profile {chosen!r}; choose one of {', '.join(PROFILES)} "
                         "(argument or TINYLM_PROFILE)")
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
        raise InputError(f"unknown device {str(name)!r}; use cpu, cuda, cuda:N or mps "
                         "(or leave the device out to use the best one available)") from None
    instead = "use cpu, or leave the device out to use the best one available"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch is a CPU-only build" if torch.version.cuda is None else "PyTorch sees no CUDA GPU here"
            raise InputError(f"device {str(name)!r}: {why}; {instead}")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise InputError(f"device {str(name)!r}: this machine has {count} CUDA GPU(s), cuda:0 to "
                             f"cuda:{count - 1}; pick one of those, or {instead}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise InputError(f"device {str(name)!r}: Apple's MPS is not available here; {instead}")
    return device


def model_device(model: torch.nn.Module) -> torch.device:
    """Where a model's weights live (the CPU for a model without any)."""
    tensor = next(itertools.chain(model.parameters(), model.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: torch.nn.Module):
    """The model in eval mode inside the block (dropout off), back in its own mode after it, however the block ends
    (an error or Ctrl-C mid-evaluation must not leave a training model in eval mode)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def resolve_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """The autocast dtype for `device`; 'auto' means bf16 > fp16 on CUDA and fp32 elsewhere.

    'auto' is fp32 on a CPU even where `bf16_is_fast` says yes: at the cpu recipes' sizes autocast's casts cost
    more than its faster products save (docs/notes/2026-11-25-cpu-training-step.md has the figures);
    without native bf16 it is many times slower.
    An explicit 'bfloat16' is honoured anywhere bf16 exists: `dtype_warning` says when it will be slow."""
    if requested != "auto":
        dtype = getattr(torch, requested)
        if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise InputError("this GPU has no bfloat16 support; use dtype 'float16' (or 'auto')")
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if native_bf16(device) else torch.float16
    return torch.float32


def native_bf16(device: torch.device) -> bool:
    """Whether the GPU computes in bf16 in hardware: ROCm GPUs and NVIDIA's Ampere (compute capability 8.0) and newer.

    torch.cuda.is_bf16_supported() says yes on older GPUs too (T4, V100), where bf16 runs emulated, far slower
    than fp16 on their tensor cores; 'auto' must pick fp16 there.
    """
    return bool(torch.version.hip) or torch.cuda.get_device_capability(device)[0] >= 8


def bf16_is_fast(device: str | torch.device) -> bool:
    """Whether bfloat16 matrix products run clearly faster than float32 ones on `device`: the one place that decides
    it, for Muon's Newton–Schulz dtype and `dtype_warning` alike.

    CUDA: where the GPU computes bf16 natively (`native_bf16`). A CPU: where PyTorch's own dispatch sends bf16
    products to a bf16 kernel of the CPU (oneDNN: AVX-512 on x86, bf16 instructions on ARM) and a short
    measurement (a few milliseconds on one thread, once per process) confirms it beats float32 by a margin; an AVX2
    CPU, or one that `ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` limits to AVX2, is "no" without measuring.
    Other devices (MPS): no, not measured."""
    device = torch.device(device)
    if device.type == "cuda":
        return native_bf16(device)
    if device.type == "cpu":
        return cpu_dispatch_has_bf16() and _cpu_bf16_measured_fast()
    return False


def cpu_dispatch_has_bf16() -> bool:
    """Whether PyTorch's CPU kernels have a bf16 path here: its oneDNN check (AVX-512 BW/VL/DQ on x86, bf16 on ARM),
    and on x86 an AVX-512 capability (`ATEN_CPU_CAPABILITY` lowers it; bf16 then runs through fp32 conversions)."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    return not x86 or torch.backends.cpu.get_cpu_capability() == "AVX512"


BF16_FAST_RATIO = 0.8  # bf16's best time over float32's at most this: a near tie is noise, not a faster kernel


@functools.cache
def _cpu_bf16_measured_fast(rounds: int = 5) -> bool:
    """bf16 against fp32 on one (128 x 384)·(384 x 384) product, the size of a small model's Newton–Schulz step:
    interleaved rounds, best of each, on one thread (a thread whose core another process holds would time the wait,
    not the kernel); True when bf16's best takes at most BF16_FAST_RATIO of fp32's. The answer picks the arithmetic
    of Muon's updates, so it asks for a clear win: native bf16 kernels are several times faster
    (docs/notes/2026-11-26-laptop-speedrun.md), an emulated path many times slower."""
    a, b = torch.randn(128, 384), torch.randn(384, 384)
    pairs = {dtype: (a.to(dtype), b.to(dtype)) for dtype in (torch.float32, torch.bfloat16)}
    best = dict.fromkeys(pairs, float("inf"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for round_ in range(rounds + 1):
            for dtype, (x, y) in pairs.items():
                start = time.perf_counter()
                for _ in range(4):
                    x @ y
                if round_:  # the first round warms both kernels up
                    best[dtype] = min(best[dtype], time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)
    return best[torch.bfloat16] <= BF16_FAST_RATIO * best[torch.float32]


def dtype_warning(device: str | torch.device, dtype: torch.dtype) -> str | None:
    """A one-line warning when `dtype` is bfloat16 on a device where bf16 is slow (`bf16_is_fast`), or float16 on
    a CPU without oneDNN's float16 kernels (its products then run many times slower than float32 ones), else None."""
    device = torch.device(device)
    if dtype == torch.float16 and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_fp16_supported():
        return ("warning: float16 was asked for, but this CPU has no native float16, so float16 runs many times "
                "slower than float32; use --dtype float32 (or auto) for speed")
    if dtype != torch.bfloat16 or bf16_is_fast(device):
        return None
    if device.type != "cpu":
        where = f"{device} has no fast bf16"
    elif cpu_dispatch_has_bf16():
        where = "this CPU computed bf16 products slower than float32 ones when measured"
    else:
        where = (f"this CPU has no native bf16 (PyTorch dispatches as {torch.backends.cpu.get_cpu_capability()}), so "
                 "bf16 runs many times slower than float32")
    return f"warning: bfloat16 was asked for, but {where}; use --dtype float32 (or auto) for speed"


def autocast(device: torch.device, dtype: torch.dtype):
    """A mixed-precision context for the forward pass; a no-op for fp32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def needs_grad_scaler(device: torch.device, dtype: torch.dtype) -> bool:
    """fp16 has too little exponent range for small gradients, so its loss is scaled up, on any device that
    trains in it (torch.amp.GradScaler serves CUDA and CPUs); bf16 and fp32 need no scaling."""
    return dtype == torch.float16


# Peak dense (no sparsity) matmul rates in TFLOP/s for MFU, from NVIDIA's datasheets, per GPU as
# torch.cuda.get_device_name names it. A pattern must match the whole name, so "NVIDIA L4" never
# matches "NVIDIA L40S". Columns: bf16 and fp16 on tensor cores (fp32 accumulation), and float32
# matmuls, which the Trainer runs as TF32 on Ampere and newer (so the TF32 tensor-core rate) and as
# plain FP32 on older GPUs; None where the GPU lacks the type. Where a datasheet prints only rates with
# 2:4 sparsity (H100, H200, L4: "one-half lower without sparsity"), the dense rate is half of it.
# Sources: the datasheets "NVIDIA H100 Tensor Core GPU" (SXM, PCIe, NVL), "NVIDIA H200 Tensor Core GPU"
# (SXM, NVL), "NVIDIA A100 Tensor Core GPU" (40 and 80 GB, SXM and PCIe: the same peaks), "NVIDIA L4",
# "NVIDIA L40S", "NVIDIA L40", "NVIDIA A10", "NVIDIA T4" ("mixed precision" is fp16), "NVIDIA V100 Tensor
# Core GPU" ("tensor performance" is fp16); the GeForce RTX 4090 and 3090 from the Ada (AD102) and Ampere
# (GA102) architecture whitepapers, "FP16/BF16 Tensor TFLOPS with FP32 Accumulate". Not listed, so no
# MFU: the A10G (AWS's variant of the A10; NVIDIA publishes no datasheet for it) and newer GPUs.
PEAK_TFLOPS: tuple[tuple[str, float | None, float | None, float], ...] = (
    # (device name pattern, bf16, fp16, float32 matmul)
    (r"NVIDIA H100 \d+GB HBM3", 1979 / 2, 1979 / 2, 989 / 2),  # the SXM5 board
    (r"NVIDIA H100 PCIe", 1513 / 2, 1513 / 2, 756 / 2),
    (r"NVIDIA H100 NVL", 1671 / 2, 1671 / 2, 835 / 2),
    (r"NVIDIA H200", 1979 / 2, 1979 / 2, 989 / 2),  # the SXM board
    (r"NVIDIA H200 NVL", 1671 / 2, 1671 / 2, 835 / 2),
    (r"NVIDIA A100[- ].*", 312, 312, 156),  # NVIDIA A100-SXM4-80GB, NVIDIA A100-PCIE-40GB, NVIDIA A100 80GB PCIe
    (r"NVIDIA L4", 242 / 2, 242 / 2, 120 / 2),
    (r"NVIDIA L40S", 362.05, 362.05, 183),
    (r"NVIDIA L40", 181.05, 181.05, 90.5),
    (r"NVIDIA A10", 125, 125, 62.5),
    (r"Tesla T4", None, 65, 8.1),
    (r"Tesla V100-SXM2-\d+GB", None, 125, 15.7),
    (r"Tesla V100-PCIE-\d+GB", None, 112, 14),
    (r"Tesla V100S-PCIE-\d+GB", None, 130, 16.4),
    (r"NVIDIA GeForce RTX 4090", 165.2, 165.2, 82.6),
    (r"NVIDIA GeForce RTX 3090", 71, 71, 35.6),
)


def peak_tflops(device_name: str, dtype: torch.dtype) -> float | None:
    """The dense peak in TFLOP/s of the GPU called `device_name` for `dtype` matmuls, or None where unlisted."""
    column = {torch.bfloat16: 1, torch.float16: 2, torch.float32: 3}.get(dtype)
    for row in PEAK_TFLOPS:
        if column is not None and re.fullmatch(row[0], device_name.strip()):
            return row[column]
    return None


def peak_flops_per_s(device: torch.device, dtype: torch.dtype) -> float | None:
    """The device's peak FLOP/s for `dtype` matmuls, or None where unknown (CPUs, MPS, unlisted GPUs)."""
    if device.type != "cuda":
        return None
    tflops = peak_tflops(torch.cuda.get_device_name(device), dtype)
    return None if tflops is None else tflops * 1e12



_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of returning it to the OS; glibc only. Returns whether
    the setting took.

    glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh mapping and unmaps
    it on free, so the next allocation of that size faults each 4 KiB page in again, zero-filled by the
    kernel. A CPU training step allocates and frees the same big tensors (the logits and their gradients) every
        time; with mmap off and no trimming, freed blocks stay in the heap and the next step reuses them
    (docs/notes/2026-11-25-cpu-training-step.md has what that saved). Peak memory is unchanged; the process keeps
    its high-water mark until it exits.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = ctypes.CDLL(None).mallopt
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def busy_elsewhere(samples: int = 5, interval: float = 0.01) -> float:
    """How many other processes are running on the CPU right now: the kernel's count of runnable tasks (Linux's
    /proc/stat procs_running, this process included) sampled `samples` times over a few milliseconds, its median
    minus this process. Now, not the recent past: the 1-minute load average still counts a job that just ended,
    such as the previous command. 0.0 where the count cannot be read."""
    stat = "/proc/stat"
    if not os.path.exists(stat):
        return 0.0
    counts = []
    for _ in range(samples):
        with open(stat) as f:
            counts += [int(line.split()[1]) for line in f if line.startswith("procs_running")]
        time.sleep(interval)
    return max(0.0, statistics.median(counts) - 1) if counts else 0.0


def spare_cores(busy: float | None = None, cores: int | None = None) -> int:
    """The cores other processes leave free: the cores this process may use minus the processes running elsewhere
    (`busy_elsewhere`, rounded), at least 1."""
    cores = cores or usable_cores()
    if busy is None:
        busy = busy_elsewhere()
    return max(1, min(cores, cores - round(busy)))


@functools.cache
def _threads_before_configuring() -> int:
    """PyTorch's thread count when `configure_backend` first ran (its default, or what the program set before), which
    later calls measure against: a notebook that ran its set-up cell on a busy machine gets its threads back when it
    runs the cell again on an idle one."""
    return torch.get_num_threads()


def configure_backend(device: str | torch.device | None = None) -> str | None:
    """The process-wide settings that make training fast, in one call that a command line or notebook makes
    before training (the Trainer changes no global state of this kind, so a library user can leave it out).
    Returns a note for the user when it chose fewer CPU threads than PyTorch would have, else None.

    On a CPU, freed big blocks stay in the heap (`keep_freed_memory`), and PyTorch gets one thread per core that
    other processes leave free (`spare_cores`): its threads wait for each other at every operation, so a thread
        whose core is busy elsewhere stalls them all (docs/notes/2026-11-25-threads-on-a-busy-machine.md has the
    figures). An OMP_NUM_THREADS in the environment is the user's choice and is kept. On CUDA, float32 matmuls and
    convolutions may use TF32 (about 8x the float32 rate on Ampere and newer, ample precision for training). All
    of it lasts for the life of the process. `device`: the one training will use (default: the best available)."""
    if resolve_device(device).type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        return None
    keep_freed_memory()
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    default = _threads_before_configuring()
    threads = min(default, spare_cores())
    if torch.get_num_threads() != threads:  # fewer on a busy machine; back to the default once it is idle again
        torch.set_num_threads(threads)
    if threads == default:
        return None
    return (f"using {threads} of {default} CPU threads: other processes keep the rest of the cores busy, and a "
            "thread without a core of its own stalls the others; OMP_NUM_THREADS=N chooses")
