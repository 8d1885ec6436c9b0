"""Every flag is declared in one place: an `add_argument` call written once (a shared flag's in tinylm/cli/flags.py,
called by each command that has it) or a field of a settings value that carries its help (tinylm.settings). A flag
written out twice drifts: two help texts, two defaults; and one flag name means one thing in every command."""

from __future__ import annotations

import ast
import collections
import dataclasses
import importlib
import pkgutil
from pathlib import Path

import tinylm

PACKAGE = Path(tinylm.__file__).resolve().parent

def written_flags(source: str) -> list[str]:
    """The "--flag" literals of the add_argument calls in `source`, once per call."""
    flags = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add_argument":
            flags += [arg.value for arg in node.args
                      if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--")]
    return flags


def declarations() -> dict[str, list[str]]:
    """Each flag -> where it is declared: a module's path per add_argument call, or an options field with help."""
    where = collections.defaultdict(list)
    for path in sorted(PACKAGE.rglob("*.py")):
        for flag in written_flags(path.read_text(encoding="utf-8")):
            where[flag].append(str(path.relative_to(PACKAGE.parent)))
    for module in pkgutil.walk_packages(tinylm.__path__, "tinylm."):
        for name, value in vars(importlib.import_module(module.name)).items():
            if isinstance(value, type) and dataclasses.is_dataclass(value) and value.__module__ == module.name:
                for field in dataclasses.fields(value):
                    if field.metadata.get("help") is not None:
                        where["--" + field.name.replace("_", "-")].append(f"{module.name}.{name}.{field.name}")
    return where


def test_every_flag_is_declared_once():
    twice = {flag: sites for flag, sites in declarations().items() if len(sites) > 1}
    assert not twice, twice


def test_the_shared_flags_are_declared_in_flags_and_options_fields():
    where = declarations()
    for flag in ("--ckpt", "--device", "--dtype", "--out", "--profile", "--batch-size", "--arch", "--file"):
        assert where[flag] == ["tinylm/cli/flags.py"], (flag, where[flag])
    assert not {"--group-size", "--kl-coef", "--beta"} & set(where)  # a recipe's fields: --set FIELD=VALUE
    assert where["--max-steps"] == ["tinylm.train.options.RunOptions.max_steps"]
    assert where["--seed"] == ["tinylm/cli/flags.py"]  # a run's seed and the sampler's: one flag, two defaults
    assert where["--temperature"] == ["tinylm.generate.sampling.Sampling.temperature"]


def test_a_flag_written_twice_is_found():
    source = 'p.add_argument("--device", help="a")\nq.add_argument("--device", help="b")\np.add_argument("x")'
    assert written_flags(source) == ["--device", "--device"]
