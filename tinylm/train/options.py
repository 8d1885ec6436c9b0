"""What every command that trains is told, settled once: `RunOptions`, the one resume rule, and OUT/settings.json.

`RunOptions` holds the options every training command shares: where the run goes and whether it continues or
replaces the run there, the profile, device, seed, dtype, budgets, learning rate and batch size (None: the recipe's).
A command line builds it once (tinylm/cli/run_options.py), a notebook builds it itself, and `resolved` settles the
profile (the one `resolve_profile` of a run) and the default run folder.

Every run writes what it resolved to OUT/settings.json (this value, the method's options, the TrainConfig and the
recipe's other settings) and prints it at the start. On --resume, an option given that differs from the saved run's
is an error that names it (`check_resume`), except those of MAY_CHANGE; an option not given takes the saved run's
value. A run folder without settings.json (an older tinylm's) is compared with what its checkpoint holds.
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path
from typing import Any, Callable

from ..errors import InputError
from ..paths import atomic_write, runs_dir, shown
from ..runtime import resolve_profile

SETTINGS_FILE = "settings.json"
MAY_CHANGE = ("max_steps", "max_seconds", "learning_rate", "device", "dtype")  # what a resumed run may change
TRAIN_FIELDS = ("seed", "dtype", "max_steps", "max_seconds", "learning_rate", "batch_size")  # TrainConfig's, too
WHERE_AND_HOW = ("out", "resume", "overwrite")  # which run, not what it trains: never compared


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The options every command that trains shares; None means the recipe's (or, resumed, the saved run's)."""

    out: str | Path | None = None  # None: the method's folder under runs/ (`resolved`)
    resume: bool = False
    overwrite: bool = False
    profile: str | None = None  # None: $TINYLM_PROFILE, else gpu with CUDA, else cpu
    device: str | None = None  # None: the best available
    seed: int | None = None
    dtype: str | None = None
    max_steps: int | None = None
    max_seconds: float | None = None
    learning_rate: float | None = None
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.resume and self.overwrite:  # both would delete the run's history, then resume it
            raise InputError("--resume continues the run in the folder and --overwrite replaces it: choose one")

    def resolved(self, folder: Callable[[str], str]) -> RunOptions:
        """These options with the profile settled and the run folder: --out, else runs/<folder(profile)>."""
        profile = resolve_profile(self.profile)
        out = Path(self.out) if self.out is not None else runs_dir() / folder(profile)
        return dataclasses.replace(self, profile=profile, out=out)

    def train_changes(self) -> dict[str, Any]:
        """The TrainConfig fields these options set (seed, dtype, budgets, learning rate, batch size)."""
        return {name: getattr(self, name) for name in TRAIN_FIELDS if getattr(self, name) is not None}


def given(*values: Any) -> dict[str, Any]:
    """The options these frozen values (RunOptions, a method's options) set, as plain data: what --resume compares.
    out, resume and overwrite say which run, not what it trains, and are left out."""
    return {f.name: plain(getattr(value, f.name)) for value in values for f in dataclasses.fields(value)
            if getattr(value, f.name) is not None and f.name not in WHERE_AND_HOW}


def plain(value: Any) -> Any:
    """`value` as JSON holds it: a dataclass as a dict, a tuple as a list, a path as a string."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [plain(item) for item in value]
    return str(value) if isinstance(value, Path) else value


def check_resume(given: dict[str, Any], saved: dict[str, Any], out: Path) -> None:
    """The one resume rule: an InputError for the first option `given` that differs from the `saved` run's, unless
    MAY_CHANGE holds it. An option the saved run does not record (an older tinylm's) is not compared."""
    for name, value in given.items():
        if name in MAY_CHANGE or name not in saved or value == saved[name]:
            continue
        flag = _flag(name, value)
        was = f"{flag} {_shown(saved[name])}" if saved[name] is not None else f"no {flag}"
        raise InputError(f"{flag} {_shown(value)}: the run in {shown(out)} was started with {was}; resume it "
                         f"without {flag} (it keeps the saved value), or start another run (another --out, or "
                         "--overwrite)")


def _flag(name: str, value: Any) -> str:
    """The command-line option of a field: --group-size for group_size, --lora-* for lora's rank, alpha, targets."""
    return f"--{name.replace('_', '-')}" + ("-*" if isinstance(value, dict) else "")


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{key} {_shown(item)}" for key, item in value.items())
    if isinstance(value, list):
        return " ".join(map(str, value))
    return repr(value) if isinstance(value, str) and (" " in value or not value) else str(value)


def write_settings(out: Path, settings: dict[str, Any]) -> None:
    """OUT/settings.json, written whole (a reader sees the old file or the new one)."""
    with atomic_write(out / SETTINGS_FILE) as f:
        f.write((json.dumps(settings, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


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
    for section in ("options", "recipe", "train"):
        if settings.get(section):
            text = ", ".join(f"{key}={_shown(value)}" for key, value in settings[section].items())
            lines.append(textwrap.fill(f"{section}: {text}", width=116, initial_indent="  ",
                                       subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines)
