"""One training run from a Recipe, start to finish: the run folder, the data, the model, the Trainer, the result.

`train(recipe)` is what `python -m tinylm.train` runs, and what a notebook or `find_or_train` calls without a
command line. The stages come once each, in order:

1. the run folder: checked and locked (one run per folder); a resume reads its last.pt here;
2. the data: prepared by rank 0 first (the other ranks then find it ready);
3. the model: the recipe's shape over the data's vocabulary, or the resumed run's own network;
4. the Trainer: batches, optimizer, evaluations; a header line says what runs where, then the plan;
5. training, then the final validation loss; checkpoints and metrics.jsonl land in the run folder.

`--overwrite` must never lose the old run to a new one that fails at once (a diverging learning rate, a damaged
token file): the old run's files are set aside in the folder, and deleted only once the new run has a checkpoint
of its own; a new run that ends without one puts them back.

What it prints goes through `say` (the header, the plan, the final line) and `on_record` (every trainer record),
so a caller can send both to a log file. Process-wide settings are the caller's: see
`tinylm.runtime.configure_backend`.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from ..config import GPTConfig, TrainConfig
from ..model.gpt import GPT
from ..paths import shown
from ..runtime import dtype_warning, resolve_device
from .checkpoint import load_training_checkpoint
from .distributed import World, barrier, current_world, device_for
from .progress import TRAINING_TIME, describe_parameters, format_duration, print_record
from .recipes import Recipe, architecture_of
from .runlock import claim_run_folder
from .trainer import RUN_FILES, Trainer, TrainingDiverged

SET_ASIDE = ".previous-run"  # where --overwrite keeps the old run's files until the new run has a checkpoint


@dataclass
class Finished:
    """What a run ends with: the final record (val_loss, best_val_loss, ...), the Trainer (its model, step and
    tokenizer, for a sample or an epilogue), and the seconds the whole call took."""

    final: dict[str, Any]
    trainer: Trainer
    seconds: float


def train(recipe: Recipe, *, device: str | None = None, world: World | None = None,
          say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_record) -> Finished:
    """Run `recipe` into recipe.out: a new run, or with recipe.resume the one in that folder continued from its
    last.pt (its own network and schedule, with the recipe's explicit options applied); recipe.overwrite replaces
    an old run there. Only rank 0 speaks (through `say` and `on_record`) and writes."""
    started = time.perf_counter()
    world = world or current_world()
    if not world.is_main:
        say = on_record = _silent
    out, resume = recipe.out, recipe.resume
    with contextlib.ExitStack() as held:
        claim_run_folder(out, held, world.is_main, resume, recipe.overwrite, say)
        device = resolve_device(device_for(world, device))  # a GPU this machine lacks fails before the data stage
        saved = load_training_checkpoint(out / "last.pt") if resume else None
        if saved is not None:
            _check_resumable(GPTConfig.from_dict(saved["model_config"]), recipe, out)

        if not world.is_main:
            barrier()  # rank 0 prepares the data first; the others then find it ready
        data = recipe.track.prepare(recipe.profile)
        if world.is_main:
            barrier()
        if saved is None:
            model_cfg, train_cfg = recipe.model_config(data.tokenizer), recipe.train
        else:  # the saved run's own model and recipe win, so the same network continues on an unchanged schedule
            if saved.get("tokenizer") != data.tokenizer.to_dict():
                raise ValueError(f"{out / 'last.pt'} was trained with another tokenizer than the {recipe.profile} "
                                 f"profile of {recipe.track.name} uses; resume it with the profile it was trained "
                                 "with (--profile)")
            model_cfg = GPTConfig.from_dict(saved["model_config"])
            train_cfg = recipe.apply_overrides(TrainConfig.from_dict(saved["train_config"]))
        torch.manual_seed(train_cfg.seed)  # the initial weights, so that a run is repeatable
        model = GPT(model_cfg)
        train_data = recipe.track.training_data(data, model_cfg.block_size, train_cfg.batch_size, world,
                                                train_cfg.seed)
        evaluators = _hellaswag_evaluator(recipe.track.hellaswag_examples.get(recipe.profile, 0), data.tokenizer, say)
        trainer = Trainer(model, train_cfg, train_data, data.val, out_dir=out, tokenizer=data.tokenizer, device=device,
                          callbacks=[on_record], sample_prompt=recipe.track.sample_prompt, world=world,
                          evaluators=evaluators)
        if saved is not None:
            trainer.load_state_dict(saved)
        say(f"{recipe.track.name} | profile {recipe.profile} | {_describe(model)} | {world.size} process(es) "
            f"| device {trainer.device}{_threads(trainer.device)} | dtype {str(trainer.dtype).removeprefix('torch.')} "
            f"| {train_cfg.batch_size} x {trainer.grad_accum_steps} x {world.size} sequences of "
            f"{model_cfg.block_size} per step | {_count_tokens(train_data):,} train / {len(data.val):,} val tokens "
            f"| run folder {shown(out)}")
        if warning := dtype_warning(trainer.device, trainer.dtype):
            say(warning)
        say(plan(trainer))
        set_aside = set_aside_old_run(out) if recipe.overwrite and world.is_main else None
        try:
            final = trainer.fit()
        except TrainingDiverged as error:
            raise TrainingDiverged(_retry_advice(trainer.step, train_cfg.learning_rate, out)) from error
        finally:
            if set_aside is not None:
                settle_old_run(out, set_aside)
        say(f"final validation loss (whole split, {len(data.val):,} tokens): {final['val_loss']:.4f}")
    return Finished(final, trainer, time.perf_counter() - started)


def plan(trainer: Trainer) -> str:
    """The header's plan: the steps, and the time budget if there is one; the trainer adds the expected time."""
    cfg = trainer.cfg
    line = f"plan: {cfg.max_steps:,} steps" + (f", from step {trainer.step:,}" if trainer.step else "")
    if cfg.max_seconds is not None:
        used = f", {format_duration(trainer.elapsed)} used" if trainer.elapsed else ""
        line += (f", or {format_duration(cfg.max_seconds)} of training if that comes first (--max-seconds{used}; "
                 f"{TRAINING_TIME})")
    return line + "; the expected time follows once the first steps are timed"


def _threads(device: torch.device) -> str:
    """ (N threads) on a CPU, where a time budget's steps depend on it; nothing elsewhere."""
    return f" ({torch.get_num_threads()} threads)" if device.type == "cpu" else ""


def _silent(*args, **kwargs) -> None:
    pass


def set_aside_old_run(out: Path, names: Iterable[str] = RUN_FILES) -> Path:
    """Move the old run's files (`names`) into out/SET_ASIDE, so that the new run starts clean and the old one
    survives a new run that fails before its first checkpoint (`settle_old_run` decides)."""
    folder = out / SET_ASIDE
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for name in names:
        if (out / name).exists():
            (out / name).replace(folder / name)
    return folder


def settle_old_run(out: Path, folder: Path) -> None:
    """After the new run: it has a checkpoint, so the old run goes; it has none, so the old run comes back (over
    anything the failed run began, such as its metrics.jsonl)."""
    if not (out / "last.pt").exists():
        for old in folder.iterdir():
            old.replace(out / old.name)
    shutil.rmtree(folder, ignore_errors=True)


def _retry_advice(step: int, learning_rate: float, out: Path) -> str:
    """The one line a diverged run ends with: where, and the command-line change most likely to fix it."""
    lower = f"--learning-rate {learning_rate / 2:.3g}"
    if (out / "last.pt").exists():
        retry = f"continue from its last good checkpoint at a lower peak rate: --resume {lower}"
    else:
        retry = f"no checkpoint was saved yet, so start again at a lower peak rate: {lower}"
    return (f"training diverged at step {step}: the loss became NaN or infinite "
            f"(peak learning rate {learning_rate:.3g}); {retry}")


def _check_resumable(saved: GPTConfig, recipe: Recipe, out: Path) -> None:
    """A resume continues the saved network: an architecture or balancing that asks for another one is an error."""
    saved_arch = architecture_of(saved) or "a custom architecture"
    arch = recipe.arch
    if arch is not None and arch != saved_arch:
        raise ValueError(f"--arch {arch}: the run in {out} is {saved_arch}; resume it without --arch "
                         f"(or with --arch {saved_arch}), or train {arch} in another --out folder")
    balancing = recipe.balancing
    if balancing is not None and (not saved.n_experts or balancing != saved.balancing):
        what = f"balances its experts with {saved.balancing}" if saved.n_experts else "has no mixture of experts"
        raise ValueError(f"--balancing {balancing}: the run in {out} {what}; resume it without --balancing, "
                         "or train another one in a new --out folder")


def _describe(model: GPT) -> str:
    """Parameter counts for the startup line: a mixture of experts also says how many one token uses."""
    config = model.config
    arch = (architecture_of(config) or "custom") + (f" ({config.balancing} balancing)" if config.n_experts else "")
    return f"{arch} | {describe_parameters(model.num_parameters(), model.num_active_parameters())}"


def _count_tokens(train_data) -> int:
    shards = getattr(train_data, "shards", None)
    return sum(len(shard) for shard in shards) if shards is not None else len(train_data)


def _hellaswag_evaluator(limit: int, tokenizer, say) -> dict:
    """HellaSwag accuracy at every evaluation, on the first `limit` validation examples (none if 0)."""
    if limit <= 0:
        return {}
    from ..eval.hellaswag import evaluate_hellaswag, locate_val, read_examples

    source = locate_val()
    examples = read_examples(source.path, limit=limit)
    say(f"HellaSwag at each evaluation: {len(examples):,} examples of {source.description}")
    return {"hellaswag": lambda model: {k: v for k, v in evaluate_hellaswag(model, tokenizer, examples).items()
                                        if k in ("acc", "acc_norm", "examples")}}
