"""What SFT, DPO and GRPO share: the options a post-training command is given, and the Job that turns a task and
its recipe into a run of the one skeleton (tinylm.train.run).

A run's task and recipe are settled once (the saved run's on --resume, then --set); the model it starts from is
named at the start, made first where the task can make it (a tinylm.train.prerequisite) and checked, all before the
run's folder is locked; settings.json keeps its path and weights' digest, so that a retrained base is refused on
--resume and a moved one with the same weights is not. The report of every method has one shape (`measure`), and
its epilogue says the same of it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch

from ..config import TrainConfig
from ..distributed import World, device_for
from ..errors import InputError
from ..model.lora import LoRAOptions, save_run_adapters
from ..paths import runs_dir, shown
from ..runtime import resolve_device
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT
from ..train.checkpoint import checkpoint_file, load_checkpoint, load_pretrained, model_to_resume, weights_digest
from ..train.options import RunOptions, given, option, plain, read_settings
from ..train.progress import format_record
from ..train.run import Job, Start
from ..train.trainer import Chooser, Trainer
from .chat_task import ChatTask
from .recipes import recipe_fields
from .task import PostTrainingTask, TaskError, clipped, greedy_pass_rate, kinds_line, measure, pass_rate_line
from .tasks import DEFAULT_TASKS, FIRST_TASKS, method_task

NAMED_BASES = ("pretrain", "gpt2")  # what --base names other than a path: the task's own base, OpenAI's GPT-2


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


def base_path(base: str, profile: str) -> str:
    """A recipe's base as --base says it: pretrain, gpt2, or the run runs/<base>-<profile> (sft-stories: the SFT run of
    the story task)."""
    return base if base in NAMED_BASES else str(runs_dir() / f"{base}-{profile}")


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


class PostTrainingJob(Job):
    """One post-training run of `method` on a task, by the task's recipe for the profile. A subclass gives `method`
    and `recipe_type`, and the Job hooks that differ (data, model, trainer, before, after)."""

    method: ClassVar[str]
    recipe_type: ClassVar[type]
    reload_best = True
    extra_files: ClassVar[tuple[str, ...]] = ()  # what the method writes into the folder beyond the report
    task_type: ClassVar[type] = PostTrainingTask  # the tasks it takes: SFT's and DPO's are ChatTasks
    loss_name: ClassVar[str]  # the method's own validation figure, as a record line says it: "answer loss"

    def chosen(self, trainer: Trainer) -> dict[str, Any]:
        """What a report says of best.pt: its step, and the validation figure that chose it, by name."""
        name = trainer.score if trainer.score == "pass_rate" else self.loss_name.lower().replace(" ", "_")
        return {"checkpoint": "best.pt", "step": trainer.best_step, f"validation_{name}": trainer.best_score}

    def chosen_line(self, trainer: Trainer) -> str:
        """The epilogue's line on best.pt: its step, and the validation figure that chose it."""
        if trainer.score == "pass_rate":
            return (f"best.pt is step {trainer.best_step}, the best validation {self.task.measure_name} "
                    f"({100 * trainer.best_score:.1f}% on {len(self.held.validation)} problems)")
        return f"best.pt is step {trainer.best_step}, the best validation {self.loss_name} ({trainer.best_score:.4f})"

    def time_line(self, report: dict, what: str = "") -> str:
        """The epilogue's line on the time: steps (`what` they trained on), training and wall seconds, the report."""
        return (f"{report['steps']} steps{what} in {report['train_seconds']:.0f} s of training, wall time "
                f"{report['wall_seconds']:.0f} s; report in {shown(self.run.out / self.report_name)}")

    def __init__(self, run: RunOptions, options: PostTrainingOptions, on_record: Callable[[dict], None]):
        self.set_kinds = (self.recipe_type, TrainConfig)
        task = options.task or DEFAULT_TASKS[self.method]
        chosen = method_task(self.method, task)  # an unknown task, or one without a recipe, touches nothing
        if not issubclass(chosen, self.task_type):
            raise TaskError(f"--task {task}: {self.method.upper()} trains on {self.task_type.__name__}s "
                            "(tinylm/posttrain/chat_task.py), and this task is not one")
        if options.system_prompt is not None and not issubclass(chosen, ChatTask):
            raise TaskError(f"--system-prompt: {task} problems are plain text, with no chat turns; leave it out")
        self.report_name = f"{self.method}_eval.json"
        self.files = (*Job.files, self.report_name, *self.extra_files)
        super().__init__(run.resolved(lambda profile: f"{self.method}-{task}-{profile}"), options,
                         given(run, options))
        self.base_given = self.given.pop("base", None)  # compared by the weights' digest, not the path
        self.on_record = on_record

    # -- the options, the task and the recipe, settled once -----------------------------------------------------
    def defaults(self) -> dict[str, Any]:
        task = method_task(self.method, self.options.task or DEFAULT_TASKS[self.method])
        chat = issubclass(task, ChatTask)
        return {"task": task.name, "base": base_path(task.recipe(self.method, self.run.profile).base, self.run.profile),
                "data": task.default_data, "system_prompt": DEFAULT_SYSTEM_PROMPT if chat else None}

    def settle(self, saved: dict[str, Any]) -> None:
        if saved.get("task") and self.options.task is None:
            self.options = dataclasses.replace(self.options, task=saved["task"])
        super().settle(saved)
        self.saved_start = saved.get("started_from", {})
        self.task = self.make_task(method_task(self.method, self.options.task))
        recipe = self.task.recipe(self.method, self.run.profile)
        saved_recipe = {k: v for k, v in saved.items() if k in recipe_fields(self.recipe_type)}
        self.recipe = dataclasses.replace(recipe, **{**saved_recipe, **self.run.set_fields_of(self.recipe_type)})

    def saved_options(self, saved: dict) -> dict[str, Any]:
        """A run of an older tinylm, without settings.json, trained the only task there was then."""
        return {"task": FIRST_TASKS[self.method]} if self.method in FIRST_TASKS else {}

    def make_task(self, task_type: type[PostTrainingTask]) -> PostTrainingTask:
        if issubclass(task_type, ChatTask):
            return task_type(self.run.profile, self.options.data, self.options.system_prompt)
        return task_type(self.run.profile, self.options.data)

    def recipe_values(self) -> dict[str, Any]:
        return {name: plain(getattr(self.recipe, name)) for name in recipe_fields(self.recipe_type)}

    def task_values(self) -> dict[str, Any]:
        return self.task.recorded()

    # -- what the run starts from, before its folder is locked ----------------------------------------------------
    def prepare(self, world: World, say: Callable[[str], None]) -> None:
        """Name the model the run starts from; a new run makes it first where the task can (its prerequisite),
        loads and checks it; a resumed one compares its weights with the saved digest."""
        device = resolve_device(device_for(world, self.run.device))
        if self.run.resume:
            start = self._checked_saved_start()
            self.start_model = None
        else:
            base = self.options.base
            prerequisite = self.task.prerequisite(self.method, base, self.run.profile, self.recipe)
            if prerequisite is not None:
                say(prerequisite.plan())
                self.before_prerequisite(prerequisite, device, world)
                base = str(prerequisite.ensure(world=world, device=self.run.device, say=say))
            elif base == "pretrain" or (base not in NAMED_BASES and not Path(base).exists()):
                raise InputError(self.missing_base(base))
            elif base in NAMED_BASES or (Path(base) / "config.json").is_file():  # a model transformers loads
                say(f"base: {shown(base) if base not in NAMED_BASES else base}")
            else:
                say(f"base: {describe_run(Path(base))}")
            model, tokenizer, self.description, start = load_pretrained(base)
            self.task.check_start(model, tokenizer, shown(base), self.method, self.recipe)
            self.start_model, self.start_tokenizer = model, tokenizer
            self.start_digest = weights_digest(model)
            self.start_path = str(Path(start).resolve()) if start is not None else str(base)
        self.task.prepare(start, device, self.method)

    def before_prerequisite(self, prerequisite, device, world: World) -> None:
        """A check before the prerequisite trains (GRPO's: does a step fit in memory)."""

    def missing_base(self, base: str) -> str:
        """What to do when --base names nothing there, or a base the task cannot make for this method."""
        default = self.task.recipe(self.method, self.run.profile).base
        method, _, task = default.partition("-")
        made = (f"make its usual start with python -m tinylm.{method} --task {task} --profile {self.run.profile}, "
                "or " if method in ("sft", "dpo") else "")
        what = (f"the {self.task.name} task makes no base of its own for {self.method.upper()}" if base == "pretrain"
                else "no run or checkpoint there")
        return f"--base {base}: {what}; {made}give the run folder or checkpoint to start from"

    def _checked_saved_start(self) -> Path | None:
        """The saved start's path (--base where it was moved), refused where its weights are not the saved ones."""
        path = self.base_given or self.saved_start.get("path")
        if path is None or path in NAMED_BASES:
            return None
        if not Path(path).exists():  # moved or deleted: the run resumes from last.pt without it, unchecked
            return Path(path)
        model, _, _, checkpoint = load_pretrained(path)
        digest, saved = weights_digest(model), self.saved_start.get("digest")
        if saved is not None and digest != saved:
            raise InputError(f"--resume: the model this run started from has changed: {shown(checkpoint)} holds "
                             f"weights {digest}, the run started from {saved}. Resume with --base at the model it "
                             "started from, or start again with --overwrite")
        self.start_path, self.start_digest, self.description = str(Path(checkpoint).resolve()), digest, shown(path)
        return checkpoint

    def started_from(self) -> dict[str, Any]:
        if not hasattr(self, "start_digest"):
            return self.saved_start
        return {"path": self.start_path, "digest": self.start_digest}

    # -- around training --------------------------------------------------------------------------------------
    def resumed(self, start: Start) -> tuple[Any, Any, TrainConfig] | None:
        """On --resume, the saved run's model, tokenizer and TrainConfig; None for a new run."""
        if start.saved is None:
            return None
        self.description = f"resumed from {shown(self.run.out / 'last.pt')}"
        return (*model_to_resume(start.saved), self.resumed_train(start.saved))

    def with_lora(self, model, cfg: TrainConfig, say: Callable[[str], None], token_ids=()) -> TrainConfig:
        """The run's TrainConfig, LoRA's adapters put into `model` first where asked (their random start seeded by
        the run's seed, so that a run repeats): only they train, and the rows of `token_ids`."""
        if self.options.lora is not None:
            torch.manual_seed(cfg.override(**self.run.train_changes()).seed)
            cfg, line = self.options.lora.adapt(model, cfg, self.recipe.lora_learning_rate, token_ids=token_ids)
            say(line)
        return cfg.override(**self.run.train_changes())

    def after(self, trainer: Trainer, report: dict, world: World) -> None:
        """best.pt (loaded by the skeleton) on the test problems with the validation figure that chose it; LoRA's
        adapters saved apart where they trained; the steps and the training time."""
        if world.is_main and (lora := save_run_adapters(trainer.model, self.run.out, self.description)):
            report["lora"] = lora
        report.update(after={**self.measure(trainer, self.held.test, world), **self.chosen(trainer)},
                      steps=trainer.step, train_seconds=round(trainer.elapsed, 1))

    def chooser(self, tokenizer, problems: list, world: World) -> Chooser | None:
        """The task's validation pass rate as what chooses best.pt, where the task says so."""
        if not self.task.choose_by_pass_rate:
            return None
        batch = self.recipe.train.eval_batch_size
        return Chooser("pass_rate", lambda model: greedy_pass_rate(model, tokenizer, self.task, problems, world=world,
                                                                   batch_size=batch)["pass_rate"])

    def measure(self, trainer: Trainer, problems: list, world: World, task: PostTrainingTask | None = None, model=None,
                tokenizer=None) -> dict[str, Any]:
        return measure(model or trainer.model, tokenizer or trainer.tokenizer, task or self.task, problems,
                       world=world, batch_size=trainer.cfg.eval_batch_size, dtype=trainer.dtype)

    def record_line(self, record: dict) -> str:
        """A trainer record: an evaluation that the task's pass rate chooses says it first."""
        if "pass_rate" not in record or record.get("event") not in ("eval", "final"):
            return format_record(record)
        return (f"{record['event']:>5} step {record['step']:>6} | validation {self.task.measure_name} "
                f"{100 * record['pass_rate']:.1f}% | best {100 * record['best_pass_rate']:.1f}%"
                + (f" | {self.loss_name} {record['val_loss']:.4f}" if "val_loss" in record else ""))

    def measured_lines(self, report: dict) -> list[str]:
        """What a report's measurements say: the test pass rate before and after (the base's in plain text where
        measured), the checks that held, the answer loss, the task's figures and a reply."""
        before, after, baseline = report["before"], report["after"], report.get("baseline")
        rates = ([("the base asked in plain text", baseline)] if baseline else []) + [("before", before),
                                                                                         ("after", after)]
        lines = [f"test {self.task.measure_name}, greedy, on {after['problems']} problems that chose nothing (95% "
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
