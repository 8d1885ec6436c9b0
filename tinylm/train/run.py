"""One run, start to finish, for every command that trains: the steps, each once, and pretraining on them.

Every run takes the same steps in the same order, as plain functions a run calls: `check_folder` (its refusals
before anything trains); on --resume `saved_settings` (the one resume rule, tinylm.train.options); the runs it starts
from made first (before its own folder is locked); `claimed` (the folder locked, the device, the saved state);
`continue_saved`; `announce` (settings and plan said); `training` (settings.json written, an --overwrite swapped in at
the first checkpoint) around `fit`; `load_best` and the report. The post-training methods call them in their own
functions (tinylm.posttrain). Pretraining's runs stay a small `Job` class run by `run_job`, because three runs
specialise it (a track, your own text: tinylm.train.text, a task-format model) and a Prerequisite is handed one.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from ..config import GPTConfig, ModelShape, TrainConfig
from ..distributed import World, barrier, broadcast_from_main, current_world, device_for
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
    read_settings,
    typed_changes,
    write_settings,
)
from .progress import TRAINING_TIME, cpu_threads_note, describe_parameters, format_duration, print_record
from .recipes import Recipe, architecture_of
from .run_folder import Staging, claim_run_folder
from .trainer import RUN_FILES, Trainer, TrainingDiverged


@dataclass
class Finished:
    """What a pretraining run ends with: the final record (val_loss, best_val_loss, ...), the Trainer (its model, step
    and tokenizer, for a sample or an epilogue) and the seconds the whole call took."""

    final: dict[str, Any]
    trainer: Trainer
    seconds: float


@dataclass(frozen=True)
class Start:
    """What a run builds its Trainer from, once its folder is claimed: the saved state (None: a new run), the device,
    the processes, where to speak, the folder the run writes into now (its run folder, or beside it under
    --overwrite) and the staging that swaps it in."""

    saved: dict | None
    device: torch.device
    world: World
    say: Callable[[str], None]
    out: Path
    staging: Staging


def check_folder(run: RunOptions, files: tuple[str, ...], world: World, say: Callable[[str], None]) -> None:
    """The folder's refusals (a run there without --resume or --overwrite, --resume without one), and an interrupted
    --overwrite settled, before any base trains."""
    with contextlib.ExitStack() as checking:
        claim_run_folder(run, checking, world.is_main, files, say)


def saved_settings(run: RunOptions, given_options: dict[str, Any],
                   older_options: Callable[[dict], dict] | None = None) -> dict:
    """The saved run's settings by name (settings.json's, else what its checkpoint holds, `older_options` reading a
    checkpoint of an older tinylm; without it such a run is refused), once the options given pass the resume rule;
    its start under "started_from"."""
    written = read_settings(run.out)
    if written is None:
        if older_options is None:
            raise InputError(f"--resume: {shown(run.out)} has no settings.json (a run of an older tinylm), so what it "
                             "was asked is unknown; start it again with --overwrite")
        saved = load_training_checkpoint(run.out / "last.pt")
        written = {"options": older_options(saved), "train": saved["train_config"]}
    settings = {**written["train"], **written.get("recipe", {}), **written["options"]}
    if "profile" in written:
        settings["profile"] = written["profile"]
    check_resume(given_options, settings, run.out, set_fields=tuple(run.set or ()))
    return {**settings, "started_from": written.get("base", {})}


@contextlib.contextmanager
def claimed(run: RunOptions, files: tuple[str, ...], world: World, say: Callable[[str], None]) -> Iterator[Start]:
    """The run folder locked for the block, the device (a GPU this machine lacks fails before the data), the saved
    state on --resume; a run that ends before its first checkpoint leaves an --overwrite's old run as it was."""
    with contextlib.ExitStack() as held:
        claim_run_folder(run, held, world.is_main, files, say)
        device = resolve_device(device_for(world, run.device))
        saved = load_training_checkpoint(run.out / "last.pt") if run.resume else None
        staging = Staging(run.out, files, enabled=run.overwrite and world.is_main)
        held.callback(_discard, staging, say)
        yield Start(saved, device, world, say, staging.path, staging)


def resumed_config(saved: dict, run: RunOptions) -> TrainConfig:
    """The saved run's TrainConfig with this call's options (the resume rule let through only those equal to the saved
    ones and those that may change)."""
    return TrainConfig.from_dict(saved["train_config"]).override(**run.train_changes())


def continue_saved(trainer: Trainer, start: Start, out: Path) -> None:
    """On --resume, the saved state loaded into the Trainer; a run with nothing left to train is refused."""
    if start.saved is not None:
        trainer.load_state_dict(start.saved)
        check_unfinished(trainer, out)


def run_settings(command: str, run: RunOptions, trainer: Trainer, options: dict[str, Any],
                 started: dict[str, dict] | None = None) -> dict[str, Any]:
    """What settings.json keeps: the command, profile and device, the options, what a post-training run `started`
    from (its "base": path and weights' digest, its "task"'s record, its "recipe" beyond the TrainConfig), and the
    TrainConfig."""
    return {"command": command, "profile": run.profile, "device": str(trainer.device), "options": options,
            **{"base": {}, "task": {}, "recipe": {}, **(started or {})}, "train": trainer.cfg.to_dict()}


def announce(start: Start, settings: dict[str, Any], header: str, trainer: Trainer) -> None:
    """The start of a run as it prints: its settings, the line that says what runs where, a dtype warning, the plan."""
    start.say(describe_settings(settings, start.staging.out))
    start.say(header)
    if start.world.is_main and (warning := dtype_warning(trainer.device, trainer.dtype)):
        start.say(warning)
    start.say(plan(trainer))


@contextlib.contextmanager
def training(trainer: Trainer, start: Start, run: RunOptions, files: tuple[str, ...], settings: dict[str, Any]):
    """The block that trains: OUT/settings.json written where the run writes (gone again if the run ends without a
    checkpoint); under --overwrite the new run's files replace the old run's at its first last.pt, and a Ctrl-C before
    then saves nothing over them."""
    # rank 0's answer on every rank: another rank looking later could find the settings.json rank 0 writes below
    saves = not start.staging.staged if start.world.is_main else True
    trainer.saves_when_interrupted = bool(broadcast_from_main(float(saves), trainer.device))
    trainer.saved_hooks.append(lambda name: _swap(start.staging, trainer) if name == "last.pt" else None)
    if start.world.is_main:
        write_settings(start.staging.path, settings)
    try:
        yield
    finally:
        if start.world.is_main and not (start.staging.path / "last.pt").exists():
            (start.staging.path / SETTINGS_FILE).unlink(missing_ok=True)


def fit(trainer: Trainer) -> dict[str, Any]:
    """Trainer.fit; a diverged run ends with one line: where, and the command-line change most likely to fix it
    (every command that trains takes --learning-rate and --resume)."""
    try:
        return trainer.fit()
    except TrainingDiverged as error:
        rate = trainer.cfg.learning_rate
        lower = f"--learning-rate {rate / 2:.3g}"
        if trainer.out_dir is not None and (trainer.out_dir / "last.pt").exists():  # this run's own, not an old run's
            retry = f"continue from its last good checkpoint at a lower peak rate: --resume {lower}"
        else:
            retry = f"no checkpoint was saved yet, so start again at a lower peak rate: {lower}"
        raise TrainingDiverged(f"training diverged at step {trainer.step}: the loss became NaN or infinite (peak "
                               f"learning rate {rate:.3g}); {retry}") from error


def _discard(staging: Staging, say: Callable[[str], None]) -> None:
    if staging.discard():
        say(f"the --overwrite ended before its first checkpoint: the run in {shown(staging.out)} is as it was")


def _swap(staging: Staging, trainer: Trainer) -> None:
    """The new run's first last.pt under --overwrite: its files replace the old run's, and it writes in place."""
    if staging.staged:
        staging.swap()
        trainer.write_into(staging.path)


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


def load_best(trainer: Trainer, path: Path, world: World) -> None:
    """Load best.pt's weights into the trainer's model on every rank (rank 0 reads the file and sends them)."""
    best = load_checkpoint(path, map_location=trainer.device) if world.is_main else None
    state = [best["model"] if best else None]
    if world.distributed:
        torch.distributed.broadcast_object_list(state)
    trainer.parallel.load_weights(state[0])  # under FSDP each rank keeps its shard


def read_report(path: Path) -> dict:
    """A resumed run's JSON report (empty where it has none yet)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def write_report(path: Path, report: dict, world: World) -> None:
    if world.is_main:
        write_json(path, report, indent=2)


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


def silent(*args, **kwargs) -> None:
    """Where a rank other than 0 speaks: nowhere."""


class Job:
    """A pretraining run: what it adds to the steps. A class because runs specialise it (TextPretraining, the
    task-format model) and a Prerequisite is handed one to train. `run` (resolved: its profile and folder settled)
    says where it runs and how, `given` what the user set, which --resume compares with the saved run's; `command`
    names the run in settings.json, `files` what it writes. A subclass gives `model(start)` ((model, tokenizer,
    TrainConfig) of a new run, or of the saved run continued: `resumed_train`), `trainer(model, tokenizer, cfg,
    start)`, `header(trainer, start)` (the line that says what runs where) and `epilogue(finished)` (what rank 0 says
    last: what the run measured, where its output went, what to run next)."""

    command = "train"
    files: tuple[str, ...] = (*RUN_FILES, SETTINGS_FILE)
    set_kinds: tuple[type, ...] = (TrainConfig,)  # the dataclasses whose fields --set may change

    def __init__(self, run: RunOptions, given: dict[str, Any] | None = None):
        if run.set:
            run = replace(run, set=typed_changes(run.set, self.set_kinds))
        self.run, self.given = run, {**(given or {}), **(run.set or {})}

    def settle(self, saved: dict[str, Any]) -> None:
        """After the resume rule: the saved run's profile where none was given (`saved`: empty for a new run)."""
        if "profile" in saved and "profile" not in self.given:
            self.run = replace(self.run, profile=saved["profile"])

    def data(self, start: Start) -> None:
        """Read or prepare the data (every rank, new run or resumed)."""

    def resumed_train(self, saved: dict) -> TrainConfig:
        return resumed_config(saved, self.run)

    def option_values(self, trainer: Trainer) -> dict[str, Any]:
        """The options as settings.json keeps them, resolved."""
        return {}

    def saved_options(self, saved: dict) -> dict[str, Any]:
        """What a checkpoint of an older tinylm (a run folder without settings.json) says of the options."""
        return {}


def run_job(job: Job, *, world: World | None = None, say: Callable[[str], None] = print) -> Finished:
    """Run `job` through the steps in the module docstring; returns what it finished with."""
    started = time.perf_counter()
    world = world or current_world()
    say = say if world.is_main else silent
    check_folder(job.run, job.files, world, say)
    job.settle(saved_settings(job.run, job.given, job.saved_options) if job.run.resume else {})
    with claimed(job.run, job.files, world, say) as start:
        job.data(start)
        model, tokenizer, cfg = job.model(start)
        trainer = job.trainer(model, tokenizer, cfg, start)
        continue_saved(trainer, start, job.run.out)
        settings = run_settings(job.command, job.run, trainer, job.option_values(trainer))
        announce(start, settings, job.header(trainer, start), trainer)
        with training(trainer, start, job.run, job.files, settings):
            final = fit(trainer)
        finished = Finished(final, trainer, time.perf_counter() - started)
        if world.is_main:
            say(job.epilogue(finished))
    return finished


class Pretraining(Job):
    """A track's recipe (tinylm.train.recipes): its data prepared by rank 0 first, the recipe's shape over the data's
    vocabulary (or the resumed run's own network), the Trainer with HellaSwag at each evaluation where the track
    asks for it; the final line gives the validation loss over the whole split."""

    set_kinds = (ModelShape, TrainConfig)

    def __init__(self, recipe: Recipe, on_record: Callable[[dict], None] = print_record):
        super().__init__(recipe.run, given(recipe.run, recipe.options))
        self.recipe, self.on_record = recipe, on_record

    def data(self, start: Start) -> None:
        if not start.world.is_main:
            barrier()  # rank 0 prepares the data first; the others then find it ready
        self.prepared = self.recipe.track.prepare_data(self.run.profile)
        if start.world.is_main:
            barrier()

    def resumed_train(self, saved: dict) -> TrainConfig:
        """The saved run's TrainConfig with this call's options; how this session runs (like the device) is this
        command's: --activation-checkpointing and --fsdp, given or not, whatever the saved run did."""
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
                f"| {start.world.size} process(es){', sharded (FSDP)' if cfg.fsdp else ', ZeRO-1' if cfg.zero else ''} "
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
    from ..eval.benchmarks import read_hellaswag
    from ..eval.hellaswag import locate_val
    from ..eval.scoring import evaluate_hellaswag

    source = locate_val()
    examples = read_hellaswag(source.path, limit=limit)
    say(f"HellaSwag at each evaluation: {len(examples):,} examples of {source.description}")
    return {"hellaswag": lambda model: {k: v for k, v in evaluate_hellaswag(model, tokenizer, examples).items()
                                        if k in ("acc", "acc_norm", "examples")}}
