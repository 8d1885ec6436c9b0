"""One run, start to finish, for every command that trains: the skeleton, once, and pretraining on it.

`run_job` takes every run through the same stages: the folder checked; on --resume, the one resume rule
(tinylm.train.options); the runs it starts from made first (`Job.prepare`, before its own folder is locked); the
folder locked (tinylm.train.run_folder); the start through a `Job`'s hooks; settings.json written and printed;
the measurements before, `Trainer.fit`, the measurements after, the report and the epilogue. A `Job` supplies only
what differs: `Pretraining` below, and the post-training methods'.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import GPTConfig, ModelShape, TrainConfig
from ..distributed import World, barrier, current_world, device_for
from ..errors import InputError
from ..model.gpt import GPT
from ..paths import shown, write_json
from ..runtime import dtype_warning, resolve_device
from .checkpoint import load_checkpoint, load_training_checkpoint
from .options import (
    SETTINGS_FILE,
    RunOptions,
    check_resume,
    describe_settings,
    given,
    plain,
    read_settings,
    typed_changes,
    write_settings,
)
from .progress import TRAINING_TIME, cpu_threads_note, describe_parameters, format_duration, print_record
from .recipes import Recipe, architecture_of
from .run_folder import Staging, claim_run_folder, has_run
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


@dataclass(frozen=True)
class Start:
    """What a Job's hooks build a run from: the saved state (None: a new run), the device, the processes, where to
    speak, and the folder the run writes into now (its run folder, or beside it under --overwrite)."""

    saved: dict | None
    device: torch.device
    world: World
    say: Callable[[str], None]
    out: Path


class Job:
    """What one kind of run adds to the skeleton. `run` (resolved: its profile and folder settled) says where it
    runs and how, `options` is the method's own frozen options value (None where it has none) and `given` what the
    user set of both, which --resume compares with the saved run's. `command` names the run in settings.json; `files`
    is what it writes into the folder (under --overwrite, beside the old run's until they swap); `report_name` the
    JSON report it keeps there (None: none); `reload_best` whether the measurements after training are of best.pt's
    weights."""

    command = "train"
    files: tuple[str, ...] = (*RUN_FILES, SETTINGS_FILE)
    report_name: str | None = None
    reload_best: bool = False
    set_kinds: tuple[type, ...] = (TrainConfig,)  # the dataclasses whose fields --set may change

    def __init__(self, run: RunOptions, options: Any = None, given: dict[str, Any] | None = None):
        if run.set:
            run = replace(run, set=typed_changes(run.set, self.set_kinds, type(options) if options else None))
        self.run, self.options, self.given = run, options, dict(given or {})
        self.given.update(run.set or {})

    # -- the start, in the order run_job calls the hooks ------------------------------------------------------
    def settle(self, saved: dict[str, Any]) -> None:
        """Settle the options after the resume rule: the given ones, else the saved run's (`saved`: empty for a new
        run), else the recipe's (`defaults`)."""
        if "profile" in saved and "profile" not in self.given:
            self.run = replace(self.run, profile=saved["profile"])
        if self.options is not None:
            names = {f.name for f in fields(self.options)}
            settled = {**self.defaults(), **{k: v for k, v in saved.items() if k in names}}
            self.options = replace(self.options, **{k: v for k, v in settled.items()
                                                    if getattr(self.options, k) is None})

    def defaults(self) -> dict[str, Any]:
        """What an option a new run was not given takes (the profile's recipe is known by now)."""
        return {}

    def prepare(self, world: World, say: Callable[[str], None]) -> None:
        """Before the run's folder is locked: say what the run starts from, and make it where it is missing (a
        base model trained first), so that a run never trains another inside its own."""

    def data(self, start: Start) -> None:
        """Read or prepare the data (every rank, new run or resumed)."""

    def model(self, start: Start) -> tuple[GPT, Any, TrainConfig]:
        """(model, tokenizer, TrainConfig) of a new run, or of the saved run continued (`resumed_train`)."""
        raise NotImplementedError

    def trainer(self, model: GPT, tokenizer: Any, cfg: TrainConfig, start: Start) -> Trainer:
        """The Trainer; the skeleton loads the saved state into it on --resume."""
        raise NotImplementedError

    def header(self, trainer: Trainer, start: Start) -> str:
        """The line that says what runs where."""
        return ""

    def resumed_train(self, saved: dict) -> TrainConfig:
        """The saved run's TrainConfig with this call's options (the resume rule let through only those equal to the
        saved ones and those that may change)."""
        return TrainConfig.from_dict(saved["train_config"]).override(**self.run.train_changes())

    # -- settings.json ----------------------------------------------------------------------------------------
    def option_values(self, trainer: Trainer) -> dict[str, Any]:
        """The method's options as settings.json keeps them, resolved."""
        return plain(self.options) if self.options is not None else {}

    def recipe_values(self) -> dict[str, Any]:
        """The recipe's settings beyond its TrainConfig, for settings.json."""
        return {}

    def started_from(self) -> dict[str, Any]:
        """The model the run started from, for settings.json: its path and weights' digest (empty: from scratch)."""
        return {}

    def task_values(self) -> dict[str, Any]:
        """What the run's task records beyond its name, for settings.json."""
        return {}

    def saved_options(self, saved: dict) -> dict[str, Any]:
        """What a checkpoint of an older tinylm (a run folder without settings.json) says of the options."""
        return {}

    # -- around training ------------------------------------------------------------------------------------
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
        if trainer.out_dir is not None and (trainer.out_dir / "last.pt").exists():  # this run's own, not an old run's
            retry = f"continue from its last good checkpoint at a lower peak rate: --resume {lower}"
        else:
            retry = f"no checkpoint was saved yet, so start again at a lower peak rate: {lower}"
        return (f"training diverged at step {trainer.step}: the loss became NaN or infinite (peak learning rate "
                f"{rate:.3g}); {retry}")


def run_job(job: Job, *, world: World | None = None, say: Callable[[str], None] = print) -> Finished:
    """Run `job` through the stages in the module docstring; returns what it finished with."""
    started = time.perf_counter()
    world = world or current_world()
    say = say if world.is_main else _silent
    out = job.run.out
    with contextlib.ExitStack() as checking:  # its refusals, and an interrupted --overwrite settled, before a base
        claim_run_folder(out, checking, world.is_main, job.run.resume, job.run.overwrite, files=job.files, say=say)
    job.settle(_saved_settings(job) if job.run.resume else {})
    job.prepare(world, say)
    with contextlib.ExitStack() as held:
        claim_run_folder(out, held, world.is_main, job.run.resume, job.run.overwrite, files=job.files, say=say)
        device = resolve_device(device_for(world, job.run.device))  # a GPU this machine lacks fails before the data
        saved = load_training_checkpoint(out / "last.pt") if job.run.resume else None
        staging = Staging(out, job.files, enabled=job.run.overwrite and world.is_main)
        held.callback(_discard, staging, say)  # a run ending before its first checkpoint leaves the old one as it was
        trainer, settings = _start(job, Start(saved, device, world, say, staging.path))
        trainer.saves_when_interrupted = not (job.run.overwrite and has_run(out, job.files))  # alike on every rank
        trainer.saved_hooks.append(lambda name: _swap(staging, trainer) if name == "last.pt" else None)
        report = _read_report(job, out) if job.run.resume else {}
        with _settings_file(staging, settings, world):
            if job.report_name is not None and "before" not in report:
                job.before(trainer, report, world)
                _write_report(job, staging.path, report, world)
            try:
                final = trainer.fit()
            except TrainingDiverged as error:
                raise TrainingDiverged(job.diverged(trainer)) from error
        if job.reload_best:
            load_best(trainer, out / "best.pt", world)
        job.after(trainer, report, world)
        if job.report_name is not None:
            report["wall_seconds"] = round(time.perf_counter() - started, 1)  # this invocation's, a base's included
            _write_report(job, out, report, world)
        finished = Finished(final, trainer, time.perf_counter() - started, report)
        if world.is_main and (closing := job.epilogue(finished)):
            say(closing)
    return finished


def _discard(staging: Staging, say: Callable[[str], None]) -> None:
    if staging.discard():
        say(f"the --overwrite ended before its first checkpoint: the run in {shown(staging.out)} is as it was")


def _swap(staging: Staging, trainer: Trainer) -> None:
    """The new run's first last.pt under --overwrite: its files replace the old run's, and it writes in place."""
    if staging.staged:
        staging.swap()
        trainer.write_into(staging.path)


def _saved_settings(job: Job) -> dict[str, Any]:
    """The saved run's settings by name (settings.json's, else what its checkpoint holds), once the options given
    pass the resume rule."""
    written = read_settings(job.run.out)
    if written is None:
        saved = load_training_checkpoint(job.run.out / "last.pt")
        written = {"options": job.saved_options(saved), "train": saved["train_config"]}
    settings = {**written["train"], **written.get("recipe", {}), **written["options"]}
    if "profile" in written:
        settings["profile"] = written["profile"]
    check_resume(job.given, settings, job.run.out, set_fields=tuple(job.run.set or ()))
    return {**settings, "started_from": written.get("base", {})}


def _start(job: Job, start: Start) -> tuple[Trainer, dict[str, Any]]:
    """The Trainer through the job's hooks, the saved state loaded on --resume; the settings and the plan said."""
    job.data(start)
    model, tokenizer, cfg = job.model(start)
    trainer = job.trainer(model, tokenizer, cfg, start)
    if start.saved is not None:
        trainer.load_state_dict(start.saved)
        check_unfinished(trainer, job.run.out)
    settings = {"command": job.command, "profile": job.run.profile, "device": str(trainer.device),
                "options": job.option_values(trainer), "base": job.started_from(), "task": job.task_values(),
                "recipe": job.recipe_values(), "train": trainer.cfg.to_dict()}
    start.say(describe_settings(settings, job.run.out))
    start.say(job.header(trainer, start))
    if start.world.is_main and (warning := dtype_warning(trainer.device, trainer.dtype)):
        start.say(warning)
    start.say(plan(trainer))
    return trainer, settings


def check_unfinished(trainer: Trainer, out: Path) -> None:
    """A resumed run with nothing left to train (its step limit reached, or its time budget used) is an error that
    says how to extend it: a --resume with another --learning-rate used to end with status 0, having trained nothing."""
    cfg, done = trainer.cfg, f"the run in {out} is finished, at step {trainer.step:,} of {trainer.cfg.max_steps:,}"
    if trainer.step >= cfg.max_steps:
        raise InputError(f"--resume: {done}; to train it further, raise its step limit: --resume --max-steps M "
                         f"with M > {cfg.max_steps}")
    if cfg.max_seconds is not None and trainer.elapsed >= cfg.max_seconds:
        raise InputError(f"--resume: {done}, its {cfg.max_seconds:g} s of training used; to train it further, raise "
                         f"its budget: --resume --max-seconds S with S > {cfg.max_seconds:g}")


@contextlib.contextmanager
def _settings_file(staging: Staging, settings: dict[str, Any], world: World):
    """OUT/settings.json for the block (rank 0 writes it where the run writes), gone again if the run ends without
    a checkpoint."""
    if world.is_main:
        write_settings(staging.path, settings)
    try:
        yield
    finally:
        if world.is_main and not (staging.path / "last.pt").exists():
            (staging.path / SETTINGS_FILE).unlink(missing_ok=True)


def load_best(trainer: Trainer, path: Path, world: World) -> None:
    """Load best.pt's weights into the trainer's model on every rank (rank 0 reads the file and sends them)."""
    best = load_checkpoint(path, map_location=trainer.device) if world.is_main else None
    state = [best["model"] if best else None]
    if world.distributed:
        torch.distributed.broadcast_object_list(state)
    trainer.load_weights(state[0])


def _read_report(job: Job, out: Path) -> dict:
    path = out / job.report_name if job.report_name else None
    return json.loads(path.read_text(encoding="utf-8")) if path is not None and path.is_file() else {}


def _write_report(job: Job, folder: Path, report: dict, world: World) -> None:
    if world.is_main:
        write_json(folder / job.report_name, report, indent=2)


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

    set_kinds = (ModelShape, TrainConfig)

    def __init__(self, recipe: Recipe, on_record: Callable[[dict], None] = print_record):
        super().__init__(recipe.run, given=given(recipe.run, recipe.options))
        self.recipe, self.on_record = recipe, on_record

    def data(self, start: Start) -> None:
        if not start.world.is_main:
            barrier()  # rank 0 prepares the data first; the others then find it ready
        self.prepared = self.recipe.track.prepare_data(self.run.profile)
        if start.world.is_main:
            barrier()

    def resumed_train(self, saved: dict) -> TrainConfig:
        """As a Job's, and how this session runs (like the device) is this command's: --activation-checkpointing and
        --fsdp, given or not, whatever the saved run did."""
        options = self.recipe.options
        return super().resumed_train(saved).override(activation_checkpointing=options.activation_checkpointing,
                                                     fsdp=options.fsdp)

    def model(self, start: Start) -> tuple[GPT, Any, TrainConfig]:
        data, saved = self.prepared, start.saved
        if saved is None:
            model_cfg, train_cfg = self.recipe.model_config(data.tokenizer), self.recipe.train
        else:  # the saved run's own network and schedule
            if saved.get("tokenizer") != data.tokenizer.to_dict():
                raise InputError(f"{self.run.out / 'last.pt'} was trained with another tokenizer than the "
                                 f"{self.run.profile} profile of {self.recipe.track.name} uses; resume it with the "
                                 "profile it was trained with (--profile)")
            model_cfg, train_cfg = GPTConfig.from_dict(saved["model_config"]), self.resumed_train(saved)
        torch.manual_seed(train_cfg.seed)  # the initial weights, so that a run is repeatable
        return GPT(model_cfg), data.tokenizer, train_cfg

    def trainer(self, model: GPT, tokenizer: Any, cfg: TrainConfig, start: Start) -> Trainer:
        track, data = self.recipe.track, self.prepared
        self.train_data = track.training_data(data, model.config.block_size, cfg.batch_size, start.world, cfg.seed)
        evaluators = _hellaswag_evaluator(track.hellaswag_examples.get(self.run.profile, 0), tokenizer, start.say)
        return Trainer(model, cfg, self.train_data, data.val, out_dir=start.out, tokenizer=tokenizer,
                       device=start.device, callbacks=[self.on_record], sample_prompt=track.sample_prompt,
                       world=start.world, evaluators=evaluators)

    def header(self, trainer: Trainer, start: Start) -> str:
        cfg, block_size = trainer.cfg, trainer.model_config.block_size
        return (f"{self.recipe.track.name} | profile {self.run.profile} | {_describe(trainer.model)} "
                f"| {start.world.size} process(es){', sharded (FSDP)' if cfg.fsdp else ''} "
                f"| device {trainer.device}{cpu_threads_note(trainer.device)} "
                f"| dtype {str(trainer.dtype).removeprefix('torch.')} "
                f"| optimizer {_describe_optimizer(trainer.optimizer)} "
                f"| {cfg.batch_size} x {trainer.grad_accum_steps} x {start.world.size} sequences of {block_size} per "
                f"step | {_count_tokens(self.train_data):,} train / {len(self.prepared.val):,} val tokens "
                f"| run folder {shown(self.run.out)}")

    def option_values(self, trainer: Trainer) -> dict[str, Any]:
        return {"track": self.recipe.track.name, "recipe": self.recipe.name, **_network(trainer.model_config)}

    def saved_options(self, saved: dict) -> dict[str, Any]:
        return _network(GPTConfig.from_dict(saved["model_config"]))

    def epilogue(self, finished: Finished) -> str:
        tokens = len(self.prepared.val)
        return f"final validation loss (whole split, {tokens:,} tokens): {finished.final['val_loss']:.4f}"


def train(recipe: Recipe, *, world: World | None = None, say: Callable[[str], None] = print,
          on_record: Callable[[dict], None] = print_record) -> Finished:
    """Run `recipe` into recipe.run.out: a new run, or with --resume the one in that folder continued from its
    last.pt (its own network and schedule; options by the resume rule, tinylm.train.options); --overwrite replaces
    an old run there. Only rank 0 speaks (through `say` and `on_record`) and writes."""
    return run_job(Pretraining(recipe, on_record), world=world, say=say)


def _network(config: GPTConfig) -> dict[str, Any]:
    """The --arch and --balancing a network was built with, and its shape (what --set may have changed)."""
    return {"arch": architecture_of(config) or "custom", "balancing": config.balancing if config.n_experts else None,
            **{f.name: getattr(config, f.name) for f in fields(ModelShape)}}


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
