"""The post-training tasks, one module each, whose `TASK` class (its `name` the module's) a method trains on: a
task's problems, checks, starting model and recipes (tinylm.posttrain.task). Adding a task is adding a module here
(or, outside the package, `register` of its class); a module whose name starts with "_" holds what tasks share. SFT
and DPO train on replies in ChatML, so their tasks are ChatTasks (tinylm.posttrain.chat_task)."""

from __future__ import annotations

import importlib
import pkgutil

from ..task import METHODS, PostTrainingTask, TaskError

DEFAULT_TASKS = {"sft": "stories", "dpo": "stories", "grpo": "arithmetic"}  # a method's task when --task is not given
_REGISTERED: dict[str, type[PostTrainingTask]] = {}


def register(task: type[PostTrainingTask]) -> type[PostTrainingTask]:
    """Make a task class defined outside this package known by its name (a test's, a notebook's)."""
    _REGISTERED[task.name] = task
    return task


def task_names() -> list[str]:
    """Every task's name: this package's modules, then the registered ones."""
    found = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    return found + [name for name in _REGISTERED if name not in found]


def task_class(name: str) -> type[PostTrainingTask]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in task_names():
        raise TaskError(f"unknown task {name!r}: choose one of {', '.join(task_names())}")
    task = importlib.import_module(f"{__name__}.{name}").TASK
    assert task.name == name, f"tinylm/posttrain/tasks/{name}.py's TASK is named {task.name!r}"
    return task


def tasks_for(method: str) -> list[str]:
    """The tasks with a recipe for `method` (one of METHODS)."""
    assert method in METHODS, method
    return [name for name in task_names() if method in task_class(name).recipes]


def method_task(method: str, name: str) -> type[PostTrainingTask]:
    """The task class `name`, which must have a recipe for `method`: else a TaskError that names those that do."""
    chosen = task_class(name)
    if method not in chosen.recipes:
        raise TaskError(f"--task {name}: {method.upper()}'s tasks are {', '.join(tasks_for(method))}")
    return chosen
