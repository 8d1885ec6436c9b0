"""One run, start to finish, for every command that trains: the skeleton, once, and pretraining on it.

Every run goes through the same stages, in `run_job`, whatever it trains:

1. the run folder: checked and locked (one run per folder), what an interrupted --overwrite left settled, and the
   --resume / --overwrite rules (tinylm.train.run_folder);
2. the start: a `Job` builds its model, data and Trainer, from scratch or from the folder's last.pt (--resume), and
   says in a header line what runs where; the plan line follows;
3. with --overwrite, the old run's files wait aside until the new run has a checkpoint of its own;
4. the measurements before training (a post-training job's baseline, kept in its report across a resume), then
   training (`Trainer.fit`), then, for a job that reports on its best model, best.pt's weights loaded on every rank;
5. the measurements after training, the report (written atomically) and the epilogue: where everything went and
   what to run next.

A `Job` supplies only what differs: `Pretraining` below (what `python -m tinylm.train` runs), and in
tinylm.posttrain the fine-tuning, preference-tuning and RL jobs and the task-format model RL starts from.

What a run prints goes through `say` (the header, the plan, the final lines) and the Trainer's callbacks (every
record), so a caller can send both to a log file. Only rank 0 speaks and writes. Process-wide settings are the
caller's: see `tinylm.runtime.configure_backend`.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import GPTConfig, TrainConfig
from ..distributed import World, barrier, current_world, device_for
from ..errors import InputError
from ..model.gpt import GPT
from ..paths import atomic_write, shown
from ..runtime import dtype_warning, resolve_device
from .checkpoint import load_checkpoint, load_training_checkpoint
from .progress import TRAINING_TIME, cpu_threads_note, describe_parameters, format_duration, print_record
from .recipes import Recipe, architecture_of
from .run_folder import claim_run_folder, overwriting
from .trainer import RUN_FILES, Trainer, TrainingDiverged


@dataclass
class Finished:
    """What a run ends with: the final record (val_loss, best_val_loss, ...), the Trainer (its model, step and
    tokenizer, for a sample or an epilogue), the seconds the whole call took, and the job's report (empty for a job
    that writes none)."""

    final: dict[str, Any]
    trainer: Trainer
    seconds: float
    report: dict[str, Any] = field(default_factory=dict)


class Job:
    """What one kind of run adds to the skeleton. `out`, `resume` and `overwrite` say where it runs and how;
    `files` is what it writes into `out` (set aside under --overwrite); `report_name` the JSON report it keeps there
    (None: none); `reload_best` whether the measurements after training are of best.pt's weights."""

    files: tuple[str, ...] = RUN_FILES
    report_name: str | None = None
    reload_best: bool = False

    def __init__(self, out: str | Path, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:  # both would delete the run's history, then resume it
            raise InputError("--resume continues the run in the folder and --overwrite replaces it: choose one")
        self.out, self.resume, self.overwrite = Path(out), resume, overwrite

    def start(self, saved: dict | None, device: torch.device, world: World, say: Callable[[str], None]) -> Trainer:
        """The Trainer of a new run (`saved` None) or of the saved run continued (the skeleton then loads `saved`
        into it); says the header line."""
        raise NotImplementedError

    def before(self, trainer: Trainer, report: dict, world: World) -> None:
        """Add the measurements before training to `report` (every rank calls it; a resume skips it when the report
        already holds them)."""

    def after(self, trainer: Trainer, report: dict, world: World) -> None:
        """Add the measurements after training to `report` (every rank calls it)."""

    def epilogue(self, finished: Finished) -> str | None:
        """What rank 0 says last: what the run measured, where its output went, and what to run next."""
        return None

    def diverged(self, trainer: Trainer) -> str:
        """The one line a diverged run ends with: where, and the command-line change most likely to fix it (every
        command that trains takes --learning-rate and --resume)."""
        rate = trainer.cfg.learning_rate
        lower = f"--learning-rate {rate / 2:.3g}"
        if (self.out / "last.pt").exists():
            retry = f"continue from its last good checkpoint at a lower peak rate: --resume {lower}"
        else:
            retry = f"no checkpoint was saved yet, so start again at a lower peak rate: {lower}"
        return (f"training diverged at step {trainer.step}: the loss became NaN or infinite (peak learning rate "
                f"{rate:.3g}); {retry}")


def run_job(job: Job, *, device: str | None = None, world: World | None = None,
            say: Callable[[str], None] = print) -> Finished:
    """Run `job` through the stages in the module docstring; returns what it finished with."""
    started = time.perf_counter()
    world = world or current_world()
    if not world.is_main:
        say = _silent
    with contextlib.ExitStack() as held:
        claim_run_folder(job.out, held, world.is_main, job.resume, job.overwrite, files=job.files, say=say)
        device = resolve_device(device_for(world, device))  # a GPU this machine lacks fails before the data stage
        saved = load_training_checkpoint(job.out / "last.pt") if job.resume else None
        trainer = job.start(saved, device, world, say)
        if saved is not None:
            trainer.load_state_dict(saved)
        if world.is_main and (warning := dtype_warning(trainer.device, trainer.dtype)):
            say(warning)
        say(plan(trainer))
        report = _read_report(job) if job.resume else {}
        with overwriting(job.out, job.files, enabled=job.overwrite and world.is_main, say=say):
            if job.report_name is not None and "before" not in report:
                job.before(trainer, report, world)
                _write_report(job, report, world)
            try:
                final = trainer.fit()
            except TrainingDiverged as error:
                raise TrainingDiverged(job.diverged(trainer)) from error
        if job.reload_best:
            load_best(trainer, job.out / "best.pt", world)
        job.after(trainer, report, world)
        if job.report_name is not None:
            report["wall_seconds"] = round(time.perf_counter() - started, 1)  # this invocation's, a base's included
            _write_report(job, report, world)
        finished = Finished(final, trainer, time.perf_counter() - started, report)
        if world.is_main and (closing := job.epilogue(finished)):
            say(closing)
    return finished


def load_best(trainer: Trainer, path: Path, world: World) -> None:
    """Load best.pt's weights into the trainer's model on every rank (rank 0 reads the file and sends them)."""
    best = load_checkpoint(path, map_location=trainer.device) if world.is_main else None
    state = [best["model"] if best else None]
    if world.distributed:
        torch.distributed.broadcast_object_list(state)
    trainer.model.load_state_dict(state[0])


def _read_report(job: Job) -> dict:
    path = job.out / job.report_name if job.report_name else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}


def _write_report(job: Job, report: dict, world: World) -> None:
    if world.is_main:
        with atomic_write(job.out / job.report_name) as f:
            f.write(json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))


def plan(trainer: Trainer) -> str:
    """The header's plan: the steps, and the time budget if there is one; the trainer adds the expected time."""
    cfg = trainer.cfg
    line = f"plan: {cfg.max_steps:,} steps" + (f", from step {trainer.step:,}" if trainer.step else "")
    if cfg.max_seconds is not None:
        used = f", {format_duration(trainer.elapsed)} used" if trainer.elapsed else ""
        line += (f", or {format_duration(cfg.max_seconds)} of training if that comes first (--max-seconds{used}; "
                 f"{TRAINING_TIME})")
    return line + "; the expected time follows once the first steps are timed"


def _describe_optimizer(optimizer) -> str:
    """The startup line's optimizer: AdamW, or Muon beside it with the dtype its Newton–Schulz computes in (which the
    hardware chooses: tinylm.train.muon.newton_schulz_dtype)."""
    muon = getattr(optimizer, "muon", None)
    if muon is None:
        return "AdamW"
    return f"Muon (Newton–Schulz in {str(muon.ns_dtype).removeprefix('torch.')}) + AdamW"


def _silent(*args, **kwargs) -> None:
    pass


class Pretraining(Job):
    """A track's recipe (tinylm.train.recipes): its data prepared by rank 0 first, the recipe's shape over the data's
    vocabulary (or the resumed run's own network), the Trainer with HellaSwag at each evaluation where the track
    asks for it; the final line gives the validation loss over the whole split."""

    def __init__(self, recipe: Recipe, on_record: Callable[[dict], None] = print_record):
        super().__init__(recipe.out, recipe.resume, recipe.overwrite)
        self.recipe, self.on_record = recipe, on_record

    def start(self, saved, device, world, say) -> Trainer:
        recipe, out = self.recipe, self.out
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
                raise InputError(f"{out / 'last.pt'} was trained with another tokenizer than the {recipe.profile} "
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
                          callbacks=[self.on_record], sample_prompt=recipe.track.sample_prompt, world=world,
                          evaluators=evaluators)
        self.val_tokens = len(data.val)
        say(f"{recipe.track.name} | profile {recipe.profile} | {_describe(model)} | {world.size} process(es) "
            f"| device {trainer.device}{cpu_threads_note(trainer.device)} "
            f"| dtype {str(trainer.dtype).removeprefix('torch.')} "
            f"| optimizer {_describe_optimizer(trainer.optimizer)} "
            f"| {train_cfg.batch_size} x {trainer.grad_accum_steps} x {world.size} sequences of "
            f"{model_cfg.block_size} per step | {_count_tokens(train_data):,} train / {len(data.val):,} val tokens "
            f"| run folder {shown(out)}")
        return trainer

    def epilogue(self, finished: Finished) -> str:
        return f"final validation loss (whole split, {self.val_tokens:,} tokens): {finished.final['val_loss']:.4f}"


def train(recipe: Recipe, *, device: str | None = None, world: World | None = None,
          say: Callable[[str], None] = print, on_record: Callable[[dict], None] = print_record) -> Finished:
    """Run `recipe` into recipe.out: a new run, or with recipe.resume the one in that folder continued from its
    last.pt (its own network and schedule, with the recipe's explicit options applied); recipe.overwrite replaces
    an old run there. Only rank 0 speaks (through `say` and `on_record`) and writes."""
    return run_job(Pretraining(recipe, on_record), device=device, world=world, say=say)


def _check_resumable(saved: GPTConfig, recipe: Recipe, out: Path) -> None:
    """A resume continues the saved network: an architecture or balancing that asks for another one is an error."""
    saved_arch = architecture_of(saved) or "a custom architecture"
    arch = recipe.arch
    if arch is not None and arch != saved_arch:
        raise InputError(f"--arch {arch}: the run in {out} is {saved_arch}; resume it without --arch "
                         f"(or with --arch {saved_arch}), or train {arch} in another --out folder")
    balancing = recipe.balancing
    if balancing is not None and (not saved.n_experts or balancing != saved.balancing):
        what = f"balances its experts with {saved.balancing}" if saved.n_experts else "has no mixture of experts"
        raise InputError(f"--balancing {balancing}: the run in {out} {what}; resume it without --balancing, "
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
