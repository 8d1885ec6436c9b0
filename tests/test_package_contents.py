"""The wheel a learner installs holds no repository tooling: every module under tinylm/ is reached, through the
package's own imports, from what a learner runs (a command, `python -m tinylm`, a public name of `tinylm`) or from a
notebook. A module that only scripts/ or tests/ import fails here: it belongs beside them (as scripts/claims.py and
scripts/course_guide.py do), not in the package."""

import ast
from pathlib import Path

import tinylm
from tests.test_layout import entry_modules, import_graph, modules
from tinylm.cli import COMMANDS, POST_TRAINING

NOTEBOOK_TWINS = Path(__file__).resolve().parents[1] / "notebooks" / "py"


def named_modules(source: str, known: set[str]) -> set[str]:
    """The tinylm modules that code names: by `import`, by `from ... import` (a submodule imported by name counts)
    and by a dotted name such as `tinylm.course.plotting.plot_losses` after `import tinylm`."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Attribute):
            dotted = ast.unparse(node)
            found.update(".".join(dotted.split(".")[:end]) for end in range(2, dotted.count(".") + 2))
    return found & known


def starting_points() -> set[str]:
    """What a learner runs: the entry modules, each command's module (tinylm.cli loads it by name), the modules behind
    `tinylm`'s public names (loaded by name on first use) and every module a notebook names."""
    known = set(modules())
    notebooks = set().union(*(named_modules(twin.read_text(encoding="utf-8"), known)
                              for twin in sorted(NOTEBOOK_TWINS.glob("*.py"))))
    commands = {f"tinylm.cli.{command}" for command in COMMANDS if command not in POST_TRAINING}
    methods = {f"tinylm.posttrain.{method}.run" for method in POST_TRAINING}  # tinylm.cli.post_training's, by name
    return {*entry_modules(), *commands, "tinylm.cli.post_training", *methods, *tinylm._EXPORTS.values(), *notebooks}


def unreached(graph: dict[str, set[str]], roots: set[str]) -> list[str]:
    """The modules of `graph` that no chain of imports reaches from `roots`. Importing a module runs its packages'
    __init__ first, so a reached module reaches its packages too."""
    seen, todo = set(), list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        packages = [".".join(name.split(".")[:end]) for end in range(1, name.count(".") + 1)]
        todo += [*graph.get(name, ()), *packages]
    return sorted(set(graph) - seen)


def with_registries(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with the imports a registry makes by name: tinylm.posttrain.tasks imports each module in its folder
    (pkgutil, importlib), so that adding a task is adding a module."""
    tasks = "tinylm.posttrain.tasks"
    return {**graph, tasks: graph.get(tasks, set()) | {name for name in graph if name.startswith(f"{tasks}.")}}


def test_every_module_of_the_package_is_reached_from_a_command_a_public_name_or_a_notebook():
    assert unreached(with_registries(import_graph()), starting_points()) == [], (
        "modules that only scripts or tests use: move them out of tinylm/ (the wheel ships all of it)")


def test_a_module_that_only_tooling_imports_is_found():
    graph = {"tinylm": set(), "tinylm.cli": {"tinylm.train.run"}, "tinylm.train": set(),
             "tinylm.train.run": {"tinylm.paths"}, "tinylm.paths": set(), "tinylm.course": set(),
             "tinylm.course.notebooks": set(),
             "tinylm.course.guide": {"tinylm.course.claims"}, "tinylm.course.claims": {"tinylm.paths"}}
    # tinylm.course is reached as the package of the notebooks' module; guide and claims only as tooling's imports
    assert unreached(graph, {"tinylm.cli", "tinylm.course.notebooks"}) == ["tinylm.course.claims",
                                                                          "tinylm.course.guide"]


def test_the_notebooks_are_read_for_the_modules_they_name():
    known = set(modules())
    code = ("import tinylm\nfrom tinylm.course import playground\nfrom tinylm.eval.loss import evaluate_loss\n"
            "tinylm.course.plotting.plot_losses([])\n")
    assert named_modules(code, known) == {"tinylm", "tinylm.course", "tinylm.course.playground", "tinylm.eval.loss",
                                          "tinylm.course.plotting"}
    assert "tinylm.course.ablation" in starting_points()  # notebooks 8a and 8b use it, and nothing a command runs
