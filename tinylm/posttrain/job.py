"""The steps SFT, DPO and GRPO share, as plain functions each method's run calls in order: the options a
post-training command is given (`PostTrainingOptions`), what a method is (`Method`), `settle` (the task and recipe,
the saved run's on --resume, then --set; the processes, and where rank 0 speaks), `start_from` (the model the run
starts from, named, made first where the task can make it, a tinylm.train.prerequisite, and checked, all before the
run's folder is locked; settings.json keeps its path and weights' digest, so that a retrained base is refused on
--resume and a moved one with the same weights is not), the model a resumed run continues (`resumed`), LoRA's
adapters, the chooser of best.pt, and the measurements after training (best.pt loaded). The report of every method
has one shape (tinylm.posttrain.task.measure), and its epilogue's lines say the same of it (`measured_lines`).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable

import torch

from ..config import TrainConfig
from ..distributed import World, barrier, current_world, device_for
from ..errors import InputError
from ..model.lora import LoRAOptions, save_run_adapters
from ..paths import runs_dir, shown
from ..runtime import resolve_device
from ..settings import option
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from ..train import run as steps
from ..train.checkpoint import (
    checkpoint_file,
    load_checkpoint,
    load_pretrained,
    model_to_resume,
    published_model,
    weights_digest,
)
from ..train.options import SETTINGS_FILE, RunOptions, given, plain, read_settings, typed_changes
from ..train.progress import format_record
from ..train.trainer import RUN_FILES, Chooser, Trainer
from .chat_task import ChatTask
from .recipes import recipe_fields
from .task import PostTrainingTask, TaskError, clipped, greedy_pass_rate, kinds_line, measure, pass_rate_line
from .tasks import DEFAULT_TASKS, method_task


def named_base(base: str) -> bool:
    """Whether --base names a model, not a path: the task's own base (pretrain), OpenAI's GPT-2 (gpt2), or a published
    model (smollm2-135m-instruct, tinylm.interop.gguf_import.PUBLISHED_GGUF, imported into runs/ once)."""
    from ..interop.gguf_import import PUBLISHED_GGUF  # here, not above: a command's --help loads no interop

    return base in ("pretrain", "gpt2", *PUBLISHED_GGUF)


@dataclasses.dataclass(frozen=True)
class PostTrainingOptions:
    """What a post-training command is asked for beyond RunOptions; None: the recipe's (resumed: the saved run's)."""

    task: str | None = option("{tasks} (default: {task})", metavar="TASK")
    base: str | None = option("{bases} (default: recipe's)", metavar="BASE")
    data: str | None = option("{data} (default: task's)", metavar="DATA")
    system_prompt: str | None = option("(default: 'You are a helpful assistant.')", metavar="TEXT")
    lora: LoRAOptions | None = option(None)  # --lora-rank, --lora-alpha, --lora-targets (tinylm/cli/options.py)

    def __post_init__(self) -> None:
        if self.base is not None:
            object.__setattr__(self, "base", str(self.base))
        if isinstance(self.lora, dict):  # as settings.json holds it
            object.__setattr__(self, "lora", LoRAOptions(**{**self.lora, "targets": tuple(self.lora["targets"])}))


def describe_run(path: Path) -> str:
    """'runs/sft-stories-cpu (sft run; best.pt from step 800 of 1,000)', or the path of a lone checkpoint."""
    checkpoint = checkpoint_file(path)
    state = load_checkpoint(checkpoint)
    settings = read_settings(checkpoint.parent) or {}
    if "step" not in state:
        return shown(path)
    limit = state.get("train_config", {}).get("max_steps")
    return (f"{shown(path)} ({settings.get('command', 'tinylm')} run; {checkpoint.name} from step {state['step']:,}"
            + (f" of {limit:,})" if limit else ")"))


@dataclasses.dataclass(frozen=True)
class Method:
    """What a post-training method is beside its run function: its name, recipe type and tasks (SFT's and DPO's are
    ChatTasks), what it writes beyond a run's files and its report, its validation figure as a record line says it,
    and whether --data names a run to train from where a task reads no data set."""

    name: str
    recipe_type: type
    loss_name: str = ""  # none where a pass rate always chooses best.pt (GRPO)
    task_type: type = PostTrainingTask
    extra_files: tuple[str, ...] = ()
    data_names_a_run: bool = False

    @property
    def report_name(self) -> str:
        return f"{self.name}_eval.json"

    @property
    def files(self) -> tuple[str, ...]:
        return (*RUN_FILES, SETTINGS_FILE, self.report_name, *self.extra_files)


@dataclasses.dataclass(frozen=True)
class Settled:
    """A run's options, task and recipe, settled: `run` resolved (profile, folder, typed --set), `options` with the
    saved run's or the recipe's where none was given; `given_base` the --base given (a resume compares its weights,
    not its path), `saved_start` the saved run's start ({} for a new run), `data_run` the run --data names;
    `world` its processes, `say` where rank 0 speaks (the other ranks are silent)."""

    method: Method
    run: RunOptions
    options: PostTrainingOptions
    task: PostTrainingTask
    recipe: Any
    given_base: str | None
    saved_start: dict[str, Any]
    data_run: Path | None
    world: World
    say: Callable[[str], None]


def settle(method: Method, run: RunOptions, options: PostTrainingOptions, *, world: World | None = None,
           say: Callable[[str], None] = print) -> Settled:
    """The task checked against the method, the run folder's refusals, on --resume the one resume rule; then the
    options settled (the given ones, else the saved run's, else the recipe's), the task made and its recipe with the
    saved run's and --set's fields."""
    world = world or current_world()
    say = say if world.is_main else steps.silent
    name = options.task or DEFAULT_TASKS[method.name]
    task_type = method_task(method.name, name)  # an unknown task, or one without a recipe, touches nothing
    if not issubclass(task_type, method.task_type):
        raise TaskError(f"--task {name}: {method.name.upper()} trains on {method.task_type.__name__}s "
                        "(tinylm/posttrain/chat_task.py), and this task is not one")
    if options.system_prompt is not None and not issubclass(task_type, ChatTask):
        raise TaskError(f"--system-prompt: {name} problems are plain text, with no chat turns; leave it out")
    given_options = given(run, options)
    run = run.resolved(lambda profile: f"{method.name}-{name}-{profile}")
    if run.set:
        run = dataclasses.replace(run, set=typed_changes(run.set, (method.recipe_type, TrainConfig),
                                                         PostTrainingOptions))
    given_options.update(run.set or {})
    given_base = given_options.pop("base", None)  # compared by the weights' digest, not the path
    steps.check_folder(run, method.files, world, say)
    saved = steps.saved_settings(run, given_options) if run.resume else {}

    if "profile" in saved and "profile" not in given_options:
        run = dataclasses.replace(run, profile=saved["profile"])
    task_type = method_task(method.name, options.task or saved.get("task") or DEFAULT_TASKS[method.name])
    base = task_type.recipe(method.name, run.profile).base  # pretrain, gpt2, or a run (sft-stories: the story SFT's)
    defaults = {"task": task_type.name,
                "base": base if named_base(base) else str(runs_dir() / f"{base}-{run.profile}"),
                "data": task_type.default_data,
                "system_prompt": DEFAULT_SYSTEM_PROMPT if issubclass(task_type, ChatTask) else None}
    settled = {**defaults, **{k: v for k, v in saved.items() if k in {f.name for f in dataclasses.fields(options)}}}
    options = dataclasses.replace(options, **{k: v for k, v in settled.items() if getattr(options, k) is None})

    reads_data = task_type.takes_data or not method.data_names_a_run  # else --data names a run to train from
    data_run = None if reads_data or options.data is None else Path(options.data)
    data = options.data if reads_data else None
    task = (task_type(run.profile, data, options.system_prompt) if issubclass(task_type, ChatTask)
            else task_type(run.profile, data))
    recipe = task.recipe(method.name, run.profile)
    saved_recipe = {k: v for k, v in saved.items() if k in recipe_fields(method.recipe_type)}
    recipe = dataclasses.replace(recipe, **{**saved_recipe, **run.set_fields_of(method.recipe_type)})
    return Settled(method, run, options, task, recipe, given_base, saved.get("started_from", {}), data_run, world,
                   say)


@dataclasses.dataclass(frozen=True)
class Base:
    """The model a run started from, as settings.json keeps it (`recorded`: its path and weights' digest) and as a
    new run's lines name it (`description`; a resumed run names its last.pt)."""

    recorded: dict[str, Any]
    description: str = ""


def start_from(settled: Settled, before_prerequisite: Callable[[Any, Any], None] | None = None
               ) -> tuple[Base, Any, Any]:
    """(base, model, tokenizer) the run starts from, before its folder is locked. A new run names it, makes it first
    where the task can (its prerequisite; `before_prerequisite(prerequisite, device)` checks before it trains), loads
    and checks it; a resumed one compares the saved start's weights with the saved digest, and continues from last.pt
    (model and tokenizer None)."""
    method, run, task, world, say = settled.method.name, settled.run, settled.task, settled.world, settled.say
    device = resolve_device(device_for(world, run.device))
    model = tokenizer = None
    if run.resume:
        start, base = _checked_saved_start(settled)
    else:
        base = settled.options.base
        prerequisite = task.prerequisite(method, base, run.profile, settled.recipe)
        if prerequisite is not None:
            say(prerequisite.plan())
            if before_prerequisite is not None:
                before_prerequisite(prerequisite, device)
            base = str(prerequisite.ensure(world=world, device=run.device, say=say))
        elif base == "pretrain" or (not named_base(base) and not Path(base).exists()):
            raise InputError(_missing_base(settled, base))
        elif named_base(base) or (Path(base) / "config.json").is_file():  # a named model, or one transformers loads
            say(f"base: {base if named_base(base) else shown(base)}")
        else:
            say(f"base: {describe_run(Path(base))}")
        model, tokenizer, description, start = load_pretrained(_imported(base, world, say))
        task.check_start(model, tokenizer, shown(base), method, settled.recipe)
        path = str(Path(start).resolve()) if start is not None else str(base)
        base = Base({"path": path, "digest": weights_digest(model)}, description)
    task.prepare(start, device, method)
    return base, model, tokenizer


def _imported(base: str, world: World, say: Callable[[str], None]) -> str:
    """A published model's checkpoint, imported into runs/ by rank 0 first where missing (the other ranks wait for
    it); any other base as it is."""
    from ..interop.gguf_import import PUBLISHED_GGUF  # here, not above: a command's --help loads no interop

    if base not in PUBLISHED_GGUF:
        return base
    if world.is_main:
        published_model(base, say)
    barrier()
    return str(published_model(base, say))


def _missing_base(settled: Settled, base: str) -> str:
    """What to do when --base names nothing there, or a base the task cannot make for this method."""
    task, profile = settled.task, settled.run.profile
    default = task.recipe(settled.method.name, profile).base
    method, _, name = default.partition("-")
    made = (f"make its usual start with python -m tinylm.{method} --task {name} --profile {profile}, "
            "or " if method in ("sft", "dpo") else "")
    what = (f"the {task.name} task makes no base of its own for {settled.method.name.upper()}" if base == "pretrain"
            else "no run or checkpoint there")
    return f"--base {base}: {what}; {made}give the run folder or checkpoint to start from"


def _checked_saved_start(settled: Settled) -> tuple[Path | None, Base]:
    """The saved start's path (--base where it was moved), refused where its weights are not the saved ones."""
    path = settled.given_base or settled.saved_start.get("path")
    if path is None or named_base(path):
        return None, Base(settled.saved_start)
    if not Path(path).exists():  # moved or deleted: the run resumes from last.pt without it, unchecked
        return Path(path), Base(settled.saved_start)
    model, _, _, checkpoint = load_pretrained(path)
    digest, saved = weights_digest(model), settled.saved_start.get("digest")
    if saved is not None and digest != saved:
        raise InputError(f"--resume: the model this run started from has changed: {shown(checkpoint)} holds "
                         f"weights {digest}, the run started from {saved}. Resume with --base at the model it "
                         "started from, or start again with --overwrite")
    return checkpoint, Base({"path": str(Path(checkpoint).resolve()), "digest": digest})


def resumed(settled: Settled, start: steps.Start) -> tuple[Any, Any, TrainConfig]:
    """The model (the Trainer then loads its weights), tokenizer and TrainConfig of the run `start` resumes."""
    model, tokenizer = model_to_resume(start.saved)
    return model, tokenizer, steps.resumed_config(start.saved, settled.run)


def with_lora(settled: Settled, model, cfg: TrainConfig, token_ids=()) -> TrainConfig:
    """The run's TrainConfig, LoRA's adapters put into `model` first where asked (their random start seeded by the
    run's seed, so that a run repeats): only they train, and the rows of `token_ids`."""
    changes = settled.run.train_changes()
    if settled.options.lora is not None:
        torch.manual_seed(cfg.override(**changes).seed)
        cfg, line = settled.options.lora.adapt(model, cfg, settled.recipe.lora_learning_rate, token_ids=token_ids)
        settled.say(line)
    return cfg.override(**changes)


@contextlib.contextmanager
def trained(settled: Settled, trainer: Trainer, base: Base, start: steps.Start,
            header: str) -> Iterator[dict[str, Any]]:
    """The run's settings (settings.json: tinylm.train.run.run_settings) and plan said (`header` first), then the
    block it trains in (tinylm.train.run.training), given the report so far: the saved run's on --resume, else {}."""
    recipe = {name: plain(getattr(settled.recipe, name)) for name in recipe_fields(settled.method.recipe_type)}
    settings = steps.run_settings(settled.method.name, settled.run, trainer, plain(settled.options),
                                  {"base": base.recorded, "task": settled.task.recorded(), "recipe": recipe})
    steps.announce(start, settings, header, trainer)
    report = steps.read_report(settled.run.out / settled.method.report_name) if settled.run.resume else {}
    with steps.training(trainer, start, settled.run, settled.method.files, settings):
        yield report


def chooser(settled: Settled, tokenizer, problems: list, batch: int) -> Chooser | None:
    """The task's validation pass rate, `batch` replies at a time, as what chooses best.pt, where the task says so."""
    task, world = settled.task, settled.world
    if not task.choose_by_pass_rate:
        return None
    return Chooser("pass_rate", lambda model: greedy_pass_rate(model, tokenizer, task, problems, world=world,
                                                               batch_size=batch)["pass_rate"])


def measure_on(trainer: Trainer, task: PostTrainingTask, problems: list, model=None, tokenizer=None) -> dict[str, Any]:
    """tinylm.posttrain.task.measure of the trainer's model (or `model`) at the trainer's batch size and dtype, on its
    processes."""
    return measure(model or trainer.model, tokenizer or trainer.tokenizer, task, problems, world=trainer.world,
                   batch_size=trainer.cfg.eval_batch_size, dtype=trainer.dtype)


def measure_after(settled: Settled, trainer: Trainer, started_from: str, problems: list, report: dict) -> None:
    """best.pt, loaded, on the test problems with the validation figure that chose it; LoRA's adapters saved apart
    (with `started_from`, what they adapt) where they trained; the steps and the training time."""
    steps.load_best(trainer, settled.run.out / "best.pt", trainer.world)
    if trainer.world.is_main and (lora := save_run_adapters(trainer.model, settled.run.out, started_from)):
        report["lora"] = lora
    report.update(after={**measure_on(trainer, settled.task, problems), **best_checkpoint(settled, trainer)},
                  steps=trainer.step, train_seconds=round(trainer.elapsed, 1))


def best_checkpoint(settled: Settled, trainer: Trainer) -> dict[str, Any]:
    """What a report says of best.pt: its step, and the validation figure that chose it, by name."""
    loss = settled.method.loss_name.lower().replace(" ", "_")
    name = trainer.score if trainer.score == "pass_rate" else loss
    return {"checkpoint": "best.pt", "step": trainer.best_step, f"validation_{name}": trainer.best_score}


def best_line(settled: Settled, trainer: Trainer, validation: list) -> str:
    """The epilogue's line on best.pt: its step, and the validation figure that chose it."""
    if trainer.score == "pass_rate":
        return (f"best.pt is step {trainer.best_step}, the best validation {settled.task.measure_name} "
                f"({100 * trainer.best_score:.1f}% on {len(validation)} problems)")
    return (f"best.pt is step {trainer.best_step}, the best validation {settled.method.loss_name} "
            f"({trainer.best_score:.4f})")


def time_line(settled: Settled, report: dict, what: str = "") -> str:
    """The epilogue's line on the time: steps (`what` they trained on), training and wall seconds, the report."""
    return (f"{report['steps']} steps{what} in {report['train_seconds']:.0f} s of training, wall time "
            f"{report['wall_seconds']:.0f} s; report in {shown(settled.run.out / settled.method.report_name)}")


def record_line(settled: Settled, record: dict) -> str:
    """A trainer record: an evaluation that the task's pass rate chooses says it first."""
    if "pass_rate" not in record or record.get("event") not in ("eval", "final"):
        return format_record(record)
    return (f"{record['event']:>5} step {record['step']:>6} | validation {settled.task.measure_name} "
            f"{100 * record['pass_rate']:.1f}% | best {100 * record['best_pass_rate']:.1f}%"
            + (f" | {settled.method.loss_name} {record['val_loss']:.4f}" if "val_loss" in record else ""))


def measured_lines(task: PostTrainingTask, report: dict) -> list[str]:
    """What a report's measurements say: the test pass rate before and after (the base's in plain text where
    measured), the checks that held, the answer loss, the task's figures and a reply."""
    before, after, baseline = report["before"], report["after"], report.get("baseline")
    rates = ([("the base asked in plain text", baseline)] if baseline else []) + [("before", before),
                                                                                     ("after", after)]
    lines = [f"test {task.measure_name}, greedy, on {after['problems']} problems that chose nothing (95% "
             "Wilson): " + "; ".join(f"{pass_rate_line(m)} {label}" for label, m in rates)]
    if after.get("kinds"):
        lines.append(f"checks that held (before -> after): {kinds_line(after, before)}")
    if after.get("answer_loss") is not None:
        lines.append(f"answer loss of the test answers: {before['answer_loss']:.4f} before, "
                     f"{after['answer_loss']:.4f} after")
    for name, value in after.get("figures", {}).items():
        lines.append(f"{name}: {before['figures'][name]:.3f} before, {value:.3f} after")
    for label, m in (("the base", baseline), ("before", None if baseline else before), ("after", after)):
        if m and m.get("replies"):
            first = m["replies"][0]
            lines.append(f"{label} ({'passes' if first['passed'] else 'fails'}) to \"{clipped(first['prompt'], 80)}"
                         f"\": {clipped(first['reply'])}")
    return lines
