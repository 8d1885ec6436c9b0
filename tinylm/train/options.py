"""What every command that trains is told, declared once: `RunOptions`, `--set`, the one resume rule, settings.json.

An options value is a settings value (tinylm.settings: fields that carry their command-line help): the flags, the
saved settings and the resume check all follow from it. `RunOptions` holds what every training command shares; `--set
FIELD=VALUE` (its `set`) changes any other field of the run's recipe or TrainConfig, typed by `typed_changes`.
Every run writes what it resolved to OUT/settings.json and prints it at the start. On --resume, an option given
that differs from the saved run's is an error that names it (`check_resume`), except those of MAY_CHANGE; an
option not given takes the saved run's value.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..paths import runs_dir, shown, write_json
from ..runtime import resolve_profile
from ..settings import option

SETTINGS_FILE = "settings.json"
# what a resumed run may change
MAY_CHANGE = ("max_steps", "max_seconds", "learning_rate", "device", "dtype", "activation_checkpointing", "fsdp",
              "zero")
TRAIN_FIELDS = ("seed", "dtype", "max_steps", "max_seconds", "learning_rate", "batch_size")  # TrainConfig's, too
WHERE_AND_HOW = ("out", "resume", "overwrite")  # which run, not what it trains: never compared


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options every command that trains shares; None means the recipe's (or, resumed, the saved run's)."""

    profile: str | None = option(None)
    out: str | Path | None = option(None)
    resume: bool = option("continue --out's run; budgets, rate, device, dtype may change", default=False,
                          exclusive="run")
    overwrite: bool = option("replace --out's run once the new one has a checkpoint", default=False,
                             exclusive="run")
    max_steps: int | None = option("{steps} (default: the recipe's)", metavar="N", minimum=1)
    max_seconds: float | None = option("seconds of training steps alone (default: none)", metavar="S")
    learning_rate: float | None = option("peak rate, floor scaled alike (default: the recipe's)", metavar="LR")
    batch_size: int | None = option(None)
    seed: int | None = option(None)
    device: str | None = option(None)
    dtype: str | None = option(None)
    set: dict[str, Any] | None = option("a field of {fields} (default: none)", metavar="F=V")

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:  # both would delete the run's history, then resume it
            raise InputError("--resume continues the run in the folder and --overwrite replaces it: choose one")

    def resolved(self, folder: Callable[[str], str]) -> RunOptions:
        """These options with the profile settled and the run folder: --out, else runs/<folder(profile)>."""
        profile = resolve_profile(self.profile)
        out = Path(self.out) if self.out is not None else runs_dir() / folder(profile)
        return dataclasses.replace(self, profile=profile, out=out)

    def train_changes(self) -> dict[str, Any]:
        """The TrainConfig fields these options set, --set's among them."""
        from ..config import TrainConfig

        changes = {name: getattr(self, name) for name in TRAIN_FIELDS if getattr(self, name) is not None}
        return {**self.set_fields_of(TrainConfig), **changes}

    def set_fields_of(self, kind: type) -> dict[str, Any]:
        """The fields of the dataclass `kind` that --set changes."""
        return fields_of(kind, self.set or {})


def fields_of(kind: type, changes: dict[str, Any]) -> dict[str, Any]:
    """The field=value `changes` that name fields of the dataclass `kind`."""
    names = {f.name for f in dataclasses.fields(kind)}
    return {k: v for k, v in changes.items() if k in names}


def typed_changes(changes: dict[str, Any], kinds: tuple[type, ...], options: type | None = None) -> dict[str, Any]:
    """--set's FIELD=VALUE pairs, each VALUE (a string from the command line, or a value) of its field's type in one
    of the dataclasses `kinds`; an InputError names a field none has, one with an option of its own (RunOptions' or
    the command's `options`), or a value of the wrong type."""
    own = {f.name for kind in (RunOptions, options) if kind is not None for f in dataclasses.fields(kind)}
    hints = {name: (kind, hint) for kind in reversed(kinds) for name, hint in typing.get_type_hints(kind).items()
             if name != "train"}
    typed = {}
    for name, value in changes.items():
        if name in own:
            raise InputError(f"--set {name}: it has an option of its own, --{name.replace('_', '-')}")
        if name not in hints:
            known = "; ".join(f"{kind.__name__}'s " + ", ".join(f.name for f in dataclasses.fields(kind)
                                                               if f.name not in own and f.name != "train")
                              for kind in kinds)
            raise InputError(f"--set {name}: no such field. --set changes {known}")
        typed[name] = _typed(name, value, hints[name][1]) if isinstance(value, str) else value
    return typed


def _typed(name: str, text: str, hint: Any) -> Any:
    """`text` as the type `hint` names: int, float, bool, str, or one of them or None."""
    choices = typing.get_args(hint) if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union \
        else (hint,)
    if type(None) in choices and text.strip().lower() in ("none", "null"):
        return None
    kind = next(choice for choice in choices if choice is not type(None))
    try:
        if kind is bool:
            if text.strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
                raise ValueError
            return text.strip().lower() in ("true", "yes", "1")
        value = kind(text)
        if kind is float and not math.isfinite(value):
            raise ValueError
        return value
    except ValueError:
        wanted = {int: "a whole number", float: "a number", bool: "true or false"}.get(kind, kind.__name__)
        raise InputError(f"--set {name}={text}: {name} takes {wanted}"
                         + (" or none" if type(None) in choices else "")) from None


def given(*values: Any) -> dict[str, Any]:
    """The options these frozen values (RunOptions, a method's options) set, as plain data: what --resume compares.
    out, resume and overwrite say which run, not what it trains, and are left out; --set's fields count one by one."""
    found = {}
    for value in values:
        for f in dataclasses.fields(value):
            setting = getattr(value, f.name)
            if setting is None or f.name in WHERE_AND_HOW:
                continue
            if f.name == "set":
                found.update({name: plain(item) for name, item in setting.items()})
            else:
                found[f.name] = plain(setting)
    return found


def plain(value: Any) -> Any:
    """`value` as JSON holds it: a dataclass as a dict, a tuple as a list, a path as a string."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def check_resume(given: dict[str, Any], saved: dict[str, Any], out: Path, set_fields=()) -> None:
    """The one resume rule: an InputError for the first option `given` that differs from the `saved` run's, unless
    MAY_CHANGE holds it. An option the saved run does not record (an older tinylm's) is not compared. `set_fields`:
    the names that --set gave."""
    for name, value in given.items():
        if name in MAY_CHANGE or name not in saved or value == saved[name]:
            continue
        flag = f"--set {name}" if name in set_fields else f"--{name.replace('_', '-')}" + \
            ("-*" if isinstance(value, dict) else "")
        joint = "=" if name in set_fields else " "
        was = f"{flag}{joint}{_shown(saved[name])}" if saved[name] is not None else f"no {flag}"
        raise InputError(f"{flag}{joint}{_shown(value)}: the run in {shown(out)} was started with {was}; resume it "
                         f"without {flag} (it keeps the saved value), or start another run (another --out, or "
                         "--overwrite)")


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_shown(item)}" for key, item in value.items())
    if isinstance(value, list):
        return " ".join(map(str, value))
    if isinstance(value, str) and Path(value).is_absolute():  # settings.json keeps it whole; a line never does
        return shown(value)
    return repr(value) if isinstance(value, str) and (" " in value or not value) else str(value)


def write_settings(out: Path, settings: dict[str, Any]) -> None:
    """OUT/settings.json, written whole (a reader sees the old file or the new one)."""
    write_json(out / SETTINGS_FILE, settings, indent=2)


def read_settings(out: Path) -> dict[str, Any] | None:
    """OUT/settings.json as written, or None where there is none (a run of an older tinylm)."""
    path = out / SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"{shown(path)} cannot be read ({error}); remove it to resume by what last.pt holds, or "
                         "start another run") from None


def describe_settings(settings: dict[str, Any], out: Path) -> str:
    """The settings as the start of a run prints them: a line per section of settings.json, wrapped."""
    profile = f" | profile {settings['profile']}" if settings["profile"] else ""
    lines = [f"settings ({shown(out / SETTINGS_FILE)}): {settings['command']}{profile} | device {settings['device']}"]
    for section in ("options", "base", "task", "recipe", "train"):
        if settings.get(section):
            text = ", ".join(f"{key}={_shown(value)}" for key, value in settings[section].items())
            lines.append(textwrap.fill(f"{section}: {text}", width=116, initial_indent="  ",
                                       subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines)
