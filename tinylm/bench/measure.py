"""Measurements: training throughput (and a race against a plain reference GPT), compile, activation checkpointing,
DDP against ZeRO-1 and FSDP (their losses, what a rank holds, a step's peak), decoding with and without the KV cache,
and the two BPE trainers. `python -m tinylm.bench` prints them (tinylm/cli/bench.py), told by ModelSpec, Timing,
Decoding and BPETiming.

Every race interleaves its arms, so that a slow spell of a shared machine hits them alike, and says whether they
computed the same thing (losses, tokens, merges); the figures still depend on the machine, so compare within one run.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import warnings
from argparse import SUPPRESS
from collections.abc import Callable

import torch

from ..config import GPT2_124M, LLAMA2C_STORIES15M, GPTConfig, TrainConfig, with_architecture
from ..distributed import current_world
from ..errors import TinyLMError
from ..generate.decode import generate
from ..model.gpt import GPT
from ..model.reference import ReferenceGPT, reference_optimizer
from ..runtime import autocast, resolve_device, resolve_dtype
from ..settings import option
from ..tokenizers.bpe import train_bpe, train_bpe_incremental
from ..train.memory import held_bytes, measured_peak, memory_account
from ..train.optim import build_optimizer
from ..train.parallel import Parallel
from ..train.recipes import GPT2_124M_TRACK, TINYSTORIES

TINYSTORIES_CPU_SHAPE, TINYSTORIES_CPU_TRAINING = TINYSTORIES.recipes["cpu"]
PRESETS = {  # the shapes `python -m tinylm.bench` and scripts/step_breakdown.py measure
    "nanogpt-cpu": GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128),
    # The 6,872 GPT-2 tokens the TinyStories sample uses (TrimmedBPETokenizer), padded to a multiple of 64.
    "tinystories-cpu": TINYSTORIES_CPU_SHAPE.config(vocab_size=6912),
    "gpt2-124m": GPT2_124M,
    # The gpt2-124m track's smoke shape with GPT-2's 50,257 tokens padded to a multiple of 64: notebook 6a's model.
    "gpt2-smoke": GPT2_124M_TRACK.recipes["smoke"][0].config(vocab_size=50_304),
    "stories15m": LLAMA2C_STORIES15M,
}
BATCH_SIZES = {"nanogpt-cpu": 12, "tinystories-cpu": TINYSTORIES_CPU_TRAINING.batch_size}  # 12 for the others
ROUNDS = {"train": 30, "compile": 6, "memory": 5, "sharding": 5}  # the interleaved rounds of each race
SHAPE_FIELDS = ("n_layer", "n_head", "n_embd", "mlp_hidden", "block_size", "vocab_size")  # and n_kv_head, last


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model a mode measures and where: a preset built as the block family `arch`, each shape field given
    replacing the preset's value (their flags share one line of --help, so each hides its own)."""

    preset: str = option(f"the shape: {', '.join(list(PRESETS)[:-1])} or {list(PRESETS)[-1]}", "nanogpt-cpu",
                         metavar="P", choices=tuple(PRESETS))
    arch: str | None = option(None)
    device: str | None = option(None)
    dtype: str = option(None, "auto")
    n_layer: int | None = option(SUPPRESS, minimum=1)
    n_head: int | None = option(SUPPRESS, minimum=1)
    n_embd: int | None = option(SUPPRESS, minimum=1)
    mlp_hidden: int | None = option(SUPPRESS, minimum=1)
    block_size: int | None = option(SUPPRESS, minimum=1)
    vocab_size: int | None = option(SUPPRESS, minimum=1)
    n_kv_head: int | None = option(SUPPRESS, minimum=1)

    def config(self) -> GPTConfig:
        """The preset with the shape fields given, built as `arch`; n_kv_head last (the family's default is half of
        the final n_head)."""
        config = dataclasses.replace(PRESETS[self.preset], **{name: getattr(self, name) for name in SHAPE_FIELDS
                                                               if getattr(self, name) is not None})
        config = config if self.arch is None else with_architecture(config, self.arch)
        return config if self.n_kv_head is None else dataclasses.replace(config, n_kv_head=self.n_kv_head)


@dataclasses.dataclass(frozen=True)
class Timing:
    """How a mode that trains the model times it (bench train, compile, memory, sharding: each takes its fields)."""

    batch_size: int | None = option(None)
    steps: int = option("optimizer steps to time", 50, metavar="N", minimum=1)
    reference: bool = option("race a plain GPT-2 of the same shape", default=False)
    rounds: int | None = option("{when}interleaved rounds", metavar="N", minimum=1)  # default: the mode's ROUNDS
    account_only: bool = option("print the account; measure nothing", default=False)
    processes: int = option("how many to start", 2, metavar="N", minimum=1)

    def batch(self, preset: str) -> int:
        """--batch-size, else the preset's recipe's, else 12."""
        return self.batch_size or BATCH_SIZES.get(preset, 12)


@dataclasses.dataclass(frozen=True)
class Decoding:
    """Greedy decoding timed (bench decode): a checkpoint's model, else random weights of the shape."""

    ckpt: str | None = option(None)
    new_tokens: int = option("tokens to generate", 500, metavar="N", minimum=1)
    prompt_tokens: list[int] | None = option("prompt lengths, one run each, shorter than the context (default: 1)",
                                             metavar="N", nargs="+", minimum=1)


@dataclasses.dataclass(frozen=True)
class BPETiming:
    """The two BPE trainers raced (bench bpe)."""

    merges: int = option("merges to learn", 500, metavar="N", minimum=1)
    repeats: int = option("runs of each trainer", 3, metavar="N", minimum=1)


def training_step(model, optimizer, x: torch.Tensor, y: torch.Tensor, device: torch.device, dtype: torch.dtype):
    """One optimizer step on the batch (x, y) as a function of no arguments; it returns the loss."""
    def step() -> torch.Tensor:
        with autocast(device, dtype):
            loss = model(x, y)[1]  # as the Trainer does: the logits are not kept through the backward pass
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def random_batch(model_cfg: GPTConfig, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    shape = (batch_size, model_cfg.block_size)
    return (torch.randint(model_cfg.vocab_size, shape, device=device),
            torch.randint(model_cfg.vocab_size, shape, device=device))


def _placed(device: str | None, dtype: str) -> tuple[torch.device, torch.dtype]:
    device = resolve_device(device)
    return device, resolve_dtype(device, dtype)


def _where(device: torch.device, dtype: torch.dtype) -> dict:
    """What every measurement reports beside its figures: the device, dtype and CPU threads it ran with."""
    return {"device": str(device), "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}


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
    """Full optimizer steps of a fresh model on one random batch, after `warmup` untimed ones. `steps` are timed in
    five consecutive blocks (fewer if there are fewer steps), which show whether the speed was steady:
    `step_ms` and the rates are the mean over all the steps, `block_ms` each block's mean, in order."""
    device, torch_dtype = _placed(device, dtype)
    torch.manual_seed(0)
    model = GPT(model_cfg).to(device)
    optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
    one_step = training_step(model, optimizer, *random_batch(model_cfg, batch_size, device), device, torch_dtype)
    for _ in range(warmup):
        one_step()
    blocks = min(5, steps)
    block_steps = [steps // blocks + (i < steps % blocks) for i in range(blocks)]  # as even as they divide
    block_seconds = []
    for count in block_steps:
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(count):
            one_step()
        _synchronize(device)
        block_seconds.append(time.perf_counter() - start)
    seconds = sum(block_seconds) / steps
    tokens = batch_size * model_cfg.block_size
    return {"parameters": model.num_parameters(), "active_parameters": model.num_active_parameters(),
            "step_ms": seconds * 1e3, "block_ms": [t / n * 1e3 for t, n in zip(block_seconds, block_steps)],
            "tokens_per_s": tokens / seconds, "tflops": model.flops_per_token() * tokens / seconds / 1e12,
            **_where(device, torch_dtype)}


def compare_checkpointing(model_cfg: GPTConfig, batch_size: int, rounds: int = ROUNDS["memory"],
                          device: str | None = None, dtype: str = "auto") -> dict:
    """The same model trained with and without activation checkpointing from the same weights on one random batch:
    per arm the memory account's peak, the measured peak bytes of live tensors of a step (the second: AdamW's
    state exists), the losses of the first three steps, and the ms of one step in each of `rounds` interleaved
    rounds. Returns {"account", "measured", "losses", "round_ms"}, each keyed by "plain" and "checkpointed", and
    "parameters", "device", "dtype", "threads"."""
    device, torch_dtype = _placed(device, dtype)
    x, y = random_batch(model_cfg, batch_size, device)
    arms, result = {}, {"account": {}, "measured": {}, "losses": {}}
    for name in ("plain", "checkpointed"):
        torch.manual_seed(0)
        model = GPT(model_cfg).to(device)
        model.activation_checkpointing = name == "checkpointed"
        optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
        arms[name] = step = training_step(model, optimizer, x, y, device, torch_dtype)
        result["losses"][name] = [step().item()]
        result["measured"][name] = measured_peak(lambda: result["losses"][name].append(step().item()),
                                                 held_bytes(model, optimizer, x, y), device)
        result["losses"][name].append(step().item())
        result["account"][name] = memory_account(model_cfg, model.num_parameters(), batch_size, torch_dtype,
                                                 checkpointing=name == "checkpointed", device_type=device.type).peak
    seconds = interleaved_seconds(arms, rounds, device)
    return {**result, "round_ms": {name: [s * 1e3 for s in values] for name, values in seconds.items()},
            "parameters": model.num_parameters(), **_where(device, torch_dtype)}


def compare_sharding(model_cfg: GPTConfig, batch_size: int, rounds: int = ROUNDS["sharding"], loss_steps: int = 3,
                     device: str | None = None, dtype: str = "auto") -> dict:
    """Under torchrun (every rank calls it): the same model trained from the same weights in each way that
    tinylm.train.parallel composes for a run, DDP (in a world of one the plain model), ZeRO-1 and FSDP2, each rank on
    its own random batch, with TrainConfig's default AdamW. Returns the mean loss over the ranks of each way's first
    `loss_steps` steps ("losses": they should agree), the ms of one step of each way in each of `rounds` interleaved
    rounds ("round_ms"), the bytes of weights, gradients (as the backward pass leaves them) and optimizer state that
    rank holds ("held"), the peak bytes of live tensors on it from before the model is made to the end of those steps
    ("step_peak": the weights, DDP's gradient buckets and ZeRO-1's flat buffers count; on the CPU gloo frees some of
    a collective's tensors late, on a thread of its own, which can add the weights' bytes), and "device", "dtype",
    "threads", "processes"; the caller reads rank 0's."""
    import torch.distributed as dist

    device, torch_dtype = _placed(device, dtype)
    generator = torch.Generator().manual_seed(dist.get_rank())
    x, y = (torch.randint(model_cfg.vocab_size, (batch_size, model_cfg.block_size), generator=generator).to(device)
            for _ in range(2))

    def local_bytes(tensors) -> int:
        return sum((t.to_local() if hasattr(t, "to_local") else t).nbytes for t in tensors if t is not None)

    arms, holdings, losses, peaks = {}, {}, {}, {}
    for name in ("ddp", "zero", "fsdp"):
        cfg, arm = TrainConfig(batch_size=batch_size, zero=name == "zero", fsdp=name == "fsdp"), {}

        def set_up_and_train(cfg=cfg, arm=arm) -> None:
            torch.manual_seed(0)
            model = GPT(model_cfg).to(device)
            parallel = Parallel(model, cfg, current_world(), device, torch_dtype)
            optimizer = parallel.optimizer()

            def step() -> tuple[int, float]:
                with autocast(device, torch_dtype):
                    loss = parallel.train_model(x, y)[1]
                loss.backward()
                gradients = local_bytes(p.grad for p in model.parameters())
                parallel.step(optimizer)
                optimizer.zero_grad(set_to_none=True)
                dist.all_reduce(loss := loss.detach().float())
                return gradients, loss.item() / dist.get_world_size()

            arm.update(model=model, optimizer=optimizer, step=step, steps=[step() for _ in range(loss_steps)])

        # from before the model exists, so that what a way frees of it (ZeRO-1 moves it into one buffer) counts too
        peaks[name] = measured_peak(set_up_and_train, local_bytes([x, y]), device)
        losses[name] = [loss for _, loss in arm["steps"]]
        optimizer = arm["optimizer"]
        state = (optimizer.state_bytes() if name == "zero" else
                 local_bytes(t for per in optimizer.state.values() for t in per.values() if t.dim() > 0))
        holdings[name] = {"weights": local_bytes(arm["model"].parameters()), "gradients": arm["steps"][0][0],
                          "optimizer": state}
        arms[name] = arm["step"]
    seconds = interleaved_seconds(arms, rounds, device)
    return {"losses": losses, "held": holdings, "step_peak": peaks,
            "round_ms": {name: [s * 1e3 for s in values] for name, values in seconds.items()},
            "processes": dist.get_world_size(), **_where(device, torch_dtype)}


def compare_with_reference(model_cfg: GPTConfig, batch_size: int, rounds: int = ROUNDS["train"], loss_steps: int = 2,
                           device: str | None = None, dtype: str = "auto") -> dict:
    """tinylm's GPT with its AdamW against `ReferenceGPT` with nanoGPT's, from the same weights on the same batch.

    Each first takes `loss_steps` steps and records its losses (from the second on they follow AdamW updates,
    so they check the gradients and the optimizers too). Then every round times one step of each, the order
    swapping from round to round, so that a slow spell of a shared machine hits both; the best round counts.
    Returns tokens/s and ms per step of each ("tinylm", "reference"), their ratio (best rounds, and the median
    round as a measure of the noise), and both lists of losses.
    """
    device, torch_dtype = _placed(device, dtype)
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
            "losses": losses, "parameters": model.num_parameters(), **_where(device, torch_dtype)}


class CompileUnavailable(TinyLMError, RuntimeError):
    """torch.compile cannot run here: no C++ compiler on a CPU, no Triton on a GPU, or an unsupported platform."""


def compare_compiled(model_cfg: GPTConfig, batch_size: int, rounds: int = ROUNDS["compile"], steps_per_round: int = 4,
                     loss_steps: int = 10, device: str | None = None, dtype: str = "auto") -> dict:
    """The same model eager and under `torch.compile` (which the tests replace), trained with AdamW from the same
    weights on the same `loss_steps` random batches, then timed in interleaved rounds.

    First each arm takes one step per batch, recording its losses and each step's seconds: the losses should agree
    to float32 rounding (compiling schedules the arithmetic differently, it does not change it; the command line
    says whether they do), and the compiled arm's first step includes the compile, tracing and code generation,
    with PyTorch's on-disk kernel cache turned off so that it is a first compile. Then `rounds` rounds, the order
    of the arms swapping from round to round so that a slow spell of a shared machine hits both; each round runs
    `steps_per_round` steps of each arm on the first batches, and its time is its median step. Returns {"losses",
    "first_step_s", "round_ms"}, each keyed by "eager" and "compiled", and "compile_s" (the compiled first step less
    the compiled arm's best round step), "parameters", "device", "dtype", "threads". CompileUnavailable when
    compiling fails.
    """
    device, torch_dtype = _placed(device, dtype)
    generator = torch.Generator().manual_seed(0)
    batches = [tuple(torch.randint(model_cfg.vocab_size, (batch_size, model_cfg.block_size), generator=generator)
                     .to(device) for _ in range(2)) for _ in range(loss_steps)]
    arms = {}
    for name in ("eager", "compiled"):
        torch.manual_seed(0)
        model = GPT(model_cfg).to(device)
        optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), device)
        arms[name] = (torch.compile(model) if name == "compiled" else model, optimizer)

    def timed_steps(name: str, count: int) -> tuple[list[float], list[float]]:
        model, optimizer = arms[name]
        seconds, losses = [], []
        for x, y in batches[:count]:
            _synchronize(device)
            start = time.perf_counter()
            losses.append(training_step(model, optimizer, x, y, device, torch_dtype)().item())
            seconds.append(time.perf_counter() - start)  # .item() waited for the device
        return seconds, losses

    from torch._inductor import config as inductor  # here, not at the top: the other measurements need no compiler

    no_cache = {"force_disable_caches": True} if hasattr(inductor, "force_disable_caches") else {}
    first = {"eager": timed_steps("eager", loss_steps)}
    try:
        with inductor.patch(no_cache), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="dynamo_pgo force disabled")  # the cache switch's own notice
            first["compiled"] = timed_steps("compiled", loss_steps)
    except Exception as error:  # the compiler's own errors have no common type
        reason = (str(error).strip().splitlines() or [""])[0][:200]
        raise CompileUnavailable(f"torch.compile failed on {device} ({type(error).__name__}: {reason}); on a CPU it "
                                 "needs a C++ compiler (g++ or clang), on a GPU Triton") from error
    round_ms: dict[str, list[float]] = {"eager": [], "compiled": []}
    for round_ in range(rounds):
        for name in (["eager", "compiled"] if round_ % 2 == 0 else ["compiled", "eager"]):
            round_ms[name].append(1e3 * statistics.median(timed_steps(name, steps_per_round)[0]))
    return {"losses": {name: losses for name, (_, losses) in first.items()},
            "first_step_s": {name: seconds[0] for name, (seconds, _) in first.items()},
            "round_ms": round_ms, "compile_s": first["compiled"][0][0] - min(round_ms["compiled"]) / 1e3,
            "parameters": arms["eager"][0].num_parameters(), **_where(device, torch_dtype)}


def measure_bpe_training(text: str, num_merges: int, repeats: int = 3) -> dict:
    """Seconds of the recounting and the incremental BPE trainer on `text` (best of `repeats`, alternating), and
    whether their merges are identical."""
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
