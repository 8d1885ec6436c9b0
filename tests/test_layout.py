"""The package's shape: modules and stages (the folders) that import each other without circles, a library that
never imports its command lines, one way to start a command, entry points that only start it, one root for every
error tinylm anticipates, one training loop, a command's --help that loads only the stages it uses, and an
`import tinylm` that loads nothing heavy.

The import graph is read from the source (ast), every import counted, those inside functions too: a lazy import
that only hides a circle is still a circle.
"""

import ast
import re
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


def stage_of(module: str) -> str:
    """The stage a module belongs to: its folder under tinylm (tinylm.train.trainer -> train), or the top-level
    module itself (tinylm.config -> config)."""
    return module.split(".")[1] if module.count(".") >= 1 else module


def stage_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Folder -> folder imports. An entry module (a command's __main__) is the door into the command lines, not
    part of the stage whose folder holds it, so it is left out (the command lines, cli, import every stage)."""
    entries = entry_modules()
    stages: dict[str, set[str]] = {}
    for module, imported in graph.items():
        if module in entries or module == "tinylm":
            continue
        stages.setdefault(stage_of(module), set()).update(
            stage_of(other) for other in imported if other != "tinylm" and stage_of(other) != stage_of(module))
    return stages


def test_the_stages_import_each_other_without_a_loop():
    assert cycles(stage_graph(import_graph())) == []


def test_the_stage_graph_finds_a_loop_between_folders():
    graph = {"tinylm.data.instruct": {"tinylm.posttrain.sft"}, "tinylm.posttrain.sft": {"tinylm.train.trainer"},
             "tinylm.train.trainer": {"tinylm.data.tokens"}, "tinylm.data.tokens": set()}
    assert cycles(stage_graph(graph)) == [["data", "posttrain", "train"]]


def test_every_command_starts_from_its_package_main():
    """One way to start a command: `python -m tinylm.<command>` runs tinylm/<command>/__main__.py; no other module
    of the package is a script."""
    for command in COMMANDS:
        assert (PACKAGE / command / "__main__.py").is_file(), command
    def is_script(path: Path) -> bool:
        return any(isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
                   for node in ast.parse(path.read_text(encoding="utf-8")).body)

    scripts = [name for name, path in modules().items() if name not in entry_modules() and is_script(path)]
    assert scripts == []


def classes() -> list[tuple[str, ast.ClassDef]]:
    return [(name, node) for name, path in modules().items()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(node, ast.ClassDef)]


def test_every_exception_class_derives_from_the_one_root():
    import importlib

    from tinylm.errors import TinyLMError

    found = []
    for module, node in classes():
        value = getattr(importlib.import_module(module), node.name, None)
        if isinstance(value, type) and issubclass(value, BaseException):
            found.append(value)
            assert issubclass(value, TinyLMError), f"{module}.{node.name} does not derive from TinyLMError"
    assert len(found) > 20  # the finder finds them


def test_one_class_has_a_fit_the_trainer():
    fits = [f"{module}.{node.name}" for module, node in classes()
            if any(isinstance(item, ast.FunctionDef) and item.name == "fit" for item in node.body)]
    assert fits == ["tinylm.train.trainer.Trainer"]


def loaded_by_help(command: str) -> set[str]:
    """The tinylm modules `python -X importtime -m tinylm.<command> --help` imports."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", f"tinylm.{command}", "--help"],
                          capture_output=True, text=True, timeout=120, cwd=PACKAGE.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    return {name for name in names if name.startswith("tinylm.")}


@pytest.mark.parametrize("command, not_loaded", [
    ("train", {"posttrain", "serve", "interop", "chat", "grpo", "dpo", "sft", "course"}),
    ("sft", {"serve", "interop", "grpo", "dpo", "bench", "course"}),
    ("dpo", {"serve", "interop", "grpo", "sft", "bench", "course"}),
    ("grpo", {"serve", "interop", "sft", "dpo", "bench", "course"}),
    ("sample", {"posttrain", "serve", "interop", "bench", "course"}),
])
def test_a_commands_help_loads_only_the_stages_it_uses(command, not_loaded):
    loaded_modules = loaded_by_help(command)
    loaded = {stage_of(name) for name in loaded_modules}
    assert not loaded & not_loaded, sorted(loaded & not_loaded)
    methods = {method_of(name) for name in loaded_modules} - {None}
    assert methods <= ({command} if command in METHODS else set()), methods  # a method's command loads it alone


METHODS = ("sft", "dpo", "grpo")  # tinylm/posttrain/<method>/


def method_of(module: str) -> str | None:
    """The post-training method a module belongs to (tinylm.posttrain.dpo.run -> dpo), None for any other module
    (tinylm.posttrain.replies, shared by the methods, included)."""
    parts = module.split(".")
    return parts[2] if parts[:2] == ["tinylm", "posttrain"] and len(parts) > 2 and parts[2] in METHODS else None


def method_crossings(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a post-training module imports a method's module of another method, or
    where a module that posttrain shares between the methods imports any method's."""
    return sorted((name, other) for name, imported in graph.items() if name.startswith("tinylm.posttrain")
                  for other in imported if method_of(other) not in (None, method_of(name)))


def test_no_post_training_method_imports_another_and_shared_code_imports_none():
    assert method_crossings(import_graph()) == []
    assert {method_of(name) for name in modules()} >= set(METHODS)  # the methods are where the test looks


def test_the_method_check_finds_a_crossing():
    graph = {"tinylm.posttrain.dpo.run": {"tinylm.posttrain.sft.run", "tinylm.posttrain.replies"},
             "tinylm.posttrain.replies": {"tinylm.posttrain.grpo.rollout"}, "tinylm.posttrain.sft.run": set()}
    assert method_crossings(graph) == [("tinylm.posttrain.dpo.run", "tinylm.posttrain.sft.run"),
                                       ("tinylm.posttrain.replies", "tinylm.posttrain.grpo.rollout")]


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


def layout_map() -> list[tuple[str, str]]:
    """(entry, its text) for each entry under tinylm/ in CONTRIBUTING.md's layout map, in order: "train" for
    `train/`, "config" for `config.py`, "<command>" for the command packages."""
    text = (PACKAGE.parent / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = text.split("## The layout", 1)[1].split("```", 2)[1]
    entries: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            name, _, rest = line.strip().partition(" ")
            entries.append((name.removesuffix("/").removesuffix(".py"), rest.strip()))
        elif line.startswith("   ") and entries:
            entries[-1] = (entries[-1][0], entries[-1][1] + " " + line.strip())
        elif not line.startswith(" ") and entries:
            break  # the next top-level folder (notebooks/, tests/, ...)
    return entries


def named_in(text: str, module: str) -> bool:
    """Whether `text` names `module` as an entry of a list: first, or after a comma, semicolon, colon, "(" or
    "and", and followed by a colon, a comma, a parenthesis or a space."""
    return re.search(rf"(?:^|[,;:(]\s*|\band\s+){re.escape(module)}(?=[\s:,;()]|$)", text) is not None


def test_a_module_is_named_as_an_entry_not_as_a_word_of_prose():
    text = "rollout: groups of sampled completions, objective: advantages and the clipped loss, trainer: GRPOTrainer"
    assert named_in(text, "rollout") and named_in(text, "objective") and named_in(text, "trainer")
    assert not named_in(text, "loss") and not named_in(text, "completions")
    assert parenthesis_after("sft/ (trainer, run: sft()), dpo/ (objective)", "sft/ (") == "trainer, run: sft()"


def parenthesis_after(text: str, opening: str) -> str:
    """What the parenthesis that `opening` ends with holds, nested ones included ("" where `opening` is absent)."""
    start = text.find(opening)
    if start < 0:
        return ""
    depth, begin = 0, start + len(opening) - 1
    for i in range(begin, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin + 1 : i]
    return text[begin + 1 :]


def map_position(stage: str, order: list[str]) -> int:
    return order.index(stage) if stage in order else order.index("<command>")


def test_each_stage_imports_only_the_stages_the_layout_map_lists_before_it():
    order = [name for name, _ in layout_map()]
    late = {stage: sorted(other for other in imported if map_position(other, order) > map_position(stage, order))
            for stage, imported in stage_graph(import_graph()).items()}
    assert not {stage: others for stage, others in late.items() if others}, "move them in CONTRIBUTING.md's map"


def test_the_layout_map_names_every_module():
    described = dict(layout_map())
    commands = set(COMMANDS)
    for name, path in modules().items():
        parts = name.split(".")
        if path.name in ("__init__.py", "__main__.py") or len(parts) < 2:
            continue
        stage = parts[1]
        if len(parts) == 2:
            assert stage in described, f"{name} is missing from CONTRIBUTING.md's layout map"
            continue
        text = described.get(stage) or (described["<command>"] if stage in commands else "")
        if len(parts) == 4:  # a sub-folder's module: named within the parenthesis after "folder/"
            text = parenthesis_after(text, f"{parts[2]}/ (")
        assert named_in(text, parts[-1]), (
            f"{name} is not named in the {stage}/ entry of CONTRIBUTING.md's layout map")
