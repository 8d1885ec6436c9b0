"""The package's shape: stages that import each other without circles, a library that never imports its command
lines, entry points that only start them, and an `import tinylm` that loads nothing heavy.

The import graph is read from the source (ast), every import counted, those inside functions too: a lazy import
that only hides a circle is still a circle.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tinylm.cli import COMMANDS

PACKAGE = Path(__file__).resolve().parents[1] / "tinylm"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """The tinylm modules that `name` imports, as absolute names (a `from x import y` that names a submodule y
    counts as importing x.y)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    known = modules()
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in known)
    return {imported for imported in found if imported in known and imported != name}


def import_graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def entry_modules() -> set[str]:
    """The modules that only start a command line: `python -m tinylm`, `python -m tinylm.<command>`."""
    known = modules()
    entries = {"tinylm.__main__"}
    for command in COMMANDS:
        entries.add(f"tinylm.{command}.__main__" if f"tinylm.{command}.__main__" in known else f"tinylm.{command}")
    assert entries <= set(known), entries - set(known)
    return entries


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_command_lines():
    offenders = {name: sorted(i for i in imported if i == "tinylm.cli" or i.startswith("tinylm.cli."))
                 for name, imported in import_graph().items()
                 if not name.startswith("tinylm.cli") and name not in entry_modules()}
    assert {name: imported for name, imported in offenders.items() if imported} == {}


@pytest.mark.parametrize("name", sorted(entry_modules()))
def test_an_entry_module_starts_its_command_only_when_run(name):
    """Everything an entry module does sits under `if __name__ == "__main__":`, so importing it (as a worker that
    multiprocessing spawns does) starts nothing."""
    tree = ast.parse(modules()[name].read_text(encoding="utf-8"))
    body = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert len(body) == 1 and isinstance(body[0], ast.If)
    assert ast.unparse(body[0].test) == "__name__ == '__main__'"


def test_every_stage_says_what_it_takes_in_and_gives_out():
    for name, path in modules().items():
        if path.name == "__init__.py" and name != "tinylm":
            tree = ast.parse(path.read_text(encoding="utf-8"))
            assert ast.get_docstring(tree), f"{name} has no docstring"


def test_import_tinylm_loads_no_plotting_datasets_or_transformers():
    probe = ("import sys, tinylm; heavy = ('matplotlib', 'datasets', 'transformers', 'ipywidgets', 'torch'); "
             "print([m for m in heavy if m in sys.modules]); tinylm.GPT; print('matplotlib' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split("\n")[:2] == ["[]", "False"]


def test_the_public_names_of_tinylm_load_on_first_use():
    import tinylm

    for name in tinylm.__all__:
        assert getattr(tinylm, name) is not None, name
    with pytest.raises(AttributeError):
        tinylm.not_a_name  # noqa: B018
