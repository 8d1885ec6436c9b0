"""The documents a learner, a teacher and a maintainer read: every command they show works pasted, every link
resolves, and the course tables are what the notebooks' outputs give.

Commands are taken from README.md, notebooks/README.md, notebooks/TEACHING.md, CONTRIBUTING.md (their shell code
blocks and inline code spans that start a command) and from each command's --help examples. A `tinylm` command is
parsed by its command's own `parse_args` (nothing runs); a `scripts/` command must name a script that exists and
options it defines. No command may name, as an input, a file the repository lacks or a placeholder (FILE, DIR,
path/to/...); runs/ folders are what earlier commands write.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

import tinylm.cli
from tinylm.cli import COMMANDS
from tinylm.interop.gguf_import import PUBLISHED_GGUF

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))  # claims.py and course_guide.py: repository tooling, not the package
from claims import figures, prose, study_time  # noqa: E402
from course_guide import LESSONS, guide_entries, replace_table, smoke_runtimes, tables  # noqa: E402

DOCUMENTS = ["README.md", "notebooks/README.md", "notebooks/TEACHING.md", "CONTRIBUTING.md"]
# options whose value is a file or folder the command reads (outputs, --out, are written and need not exist)
INPUT_OPTIONS = {"--text", "--data", "--hellaswag-file", "--llama2c", "--tokenizer-model", "--hf", "--ckpt", "--base",
                 "--compare", "--file", "--init"}
# inputs a learner downloads, and the names the options take instead of a path (runs/ and data/: what train writes)
NOT_FILES = {"instruct", "preference", "pretrain", "gpt2", "char", "stories15M.bin", "tokenizer.model", "stories15M.pt",
             *PUBLISHED_GGUF}  # a published model by name: imported into runs/ when first named
TRAINED_BPE = re.compile(r"bpe:\d+")  # train text --tokenizer bpe:N: a size, not a file
PLACEHOLDER = re.compile(r"^[A-Z][A-Z_]*$|path/to|\bFILE\b|\bDIR\b|<[^>]+>")
COMMAND_START = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:python -m tinylm\b|torchrun\b.*-m tinylm\.|python scripts/)")


def shell_lines(text: str) -> list[str]:
    """The commands of a markdown file: each line of its bash code blocks (continuations joined, comments and
    `export` lines dropped), and each inline code span that starts a command."""
    lines = []
    for block in re.findall(r"```(?:bash|sh|console)\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line and not line.startswith("export "):
                lines.append(line)
    for span in re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", text, flags=re.S)):
        if COMMAND_START.match(span.strip()) and "..." not in span and "<" not in span:  # elided: prose
            lines.append(span.strip())
    return lines


def commands_in(line: str) -> list[list[str]]:
    """The commands of a shell line, split at && || ; and ( ), each as its words."""
    commands = []
    for part in re.split(r"&&|\|\||;|\(|\)", line):
        words = shlex.split(part.strip(), comments=True) if part.strip() else []
        while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value before the command
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def tinylm_argv(words: list[str]) -> tuple[str, list[str]] | None:
    """(command, its arguments) of a `python -m tinylm.X ...`, `python -m tinylm X ...` or `torchrun ... -m
    tinylm.X ...` command; None for any other."""
    if "-m" not in words:
        return None
    at = words.index("-m")
    module = words[at + 1] if at + 1 < len(words) else ""
    if module == "tinylm":
        return (words[at + 2], words[at + 3:]) if at + 2 < len(words) else ("", [])
    if module.startswith("tinylm."):
        return module.removeprefix("tinylm."), words[at + 2:]
    return None


def check_inputs(argv: list[str]) -> list[str]:
    problems = []
    for option, value in zip(argv, argv[1:]):
        if PLACEHOLDER.search(value) and not option.startswith("--prompt") and option != "--system":
            problems.append(f"placeholder {value!r} after {option}")
        elif (option in INPUT_OPTIONS and value not in NOT_FILES and not TRAINED_BPE.fullmatch(value)
              and not value.startswith(("runs/", "data/"))):
            if not (ROOT / value).exists():
                problems.append(f"{option} {value}: no such file in the repository")
    return problems


def parse_problems(command: str, argv: list[str]) -> list[str]:
    """Why `python -m tinylm.<command> argv` would not start: its parser's error, or a missing input."""
    if command in ("--help", "-h", "") or not argv:  # the list of commands, or a command named in prose
        return []
    if command not in COMMANDS:
        return [f"unknown command {command!r}"]
    if "--help" in argv or "-h" in argv:
        return []
    module = tinylm.cli.command_line(command)
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            module.parse_args(argv)
    except SystemExit as exit_:
        if exit_.code:
            return [stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else f"exit {exit_.code}"]
    return check_inputs(argv)


def script_problems(words: list[str]) -> list[str]:
    script = ROOT / words[1]
    if not script.is_file():
        return [f"no script {words[1]}"]
    source = script.read_text(encoding="utf-8")
    return [f"{words[1]} defines no option {word}" for word in words[2:]
            if word.startswith("--") and f'"{word}"' not in source]


def problems_of(line: str) -> list[str]:
    problems = []
    for words in commands_in(line):
        target = tinylm_argv(words)
        if target is not None:
            problems += parse_problems(*target)
        elif words[:2] == ["python", words[1] if len(words) > 1 else ""] and words[1].startswith("scripts/"):
            problems += script_problems(words)
    return problems


def help_examples() -> dict[str, list[str]]:
    """Each command's --help examples (its subcommands' too), as command lines."""
    found = {}
    for command in COMMANDS:
        module = tinylm.cli.command_line(command)
        helps = []
        for argv in (["--help"], *([sub, "--help"] for sub in SUBCOMMANDS.get(command, []))):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
                module.parse_args(argv)
            helps.append(out.getvalue())
        lines = []
        for text in helps:
            if "examples:" in text:
                lines += [line.strip() for line in text.split("examples:", 1)[1].splitlines() if line.strip()]
        found[command] = lines
    return found


SUBCOMMANDS = {"eval": ["loss", "hellaswag"], "interop": ["export", "import"],
               "bench": ["train", "compile", "decode", "bpe", "cache", "speedrun"]}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_shown_parses(document):
    text = (ROOT / document).read_text(encoding="utf-8")
    lines = shell_lines(text)
    assert lines, f"{document} shows no command"
    failures = [f"{line}\n    -> {problem}" for line in lines for problem in problems_of(line)]
    assert not failures, f"{document}: commands that would not work pasted:\n" + "\n".join(failures)


def test_every_help_example_parses():
    examples = help_examples()
    for command, lines in examples.items():
        assert lines, f"python -m tinylm.{command} --help shows no example"
    failures = [f"{line}\n    -> {problem}" for lines in examples.values() for line in lines
                for problem in problems_of(line.split("   #")[0])]
    assert not failures, "--help examples that would not work pasted:\n" + "\n".join(failures)


def test_problems_are_found():
    assert problems_of("python -m tinylm.eval loss --ckpt runs/x --text story.txt")
    assert problems_of("python -m tinylm.train shakespeare-char --no-such-option")
    assert problems_of("python -m tinylm.sample --ckpt FILE")
    assert problems_of("python scripts/no_such_script.py")
    assert not problems_of("python -m tinylm.eval loss --ckpt runs/x --text README.md")
    assert not problems_of("TINYLM_PROFILE=smoke python -m tinylm.train shakespeare-char --max-steps 20")


def test_epilogue_names_no_repository_folder(tmp_path, monkeypatch):
    """What a finished run prints next: a clone opens the notebook in Jupyter; an installed wheel (no notebooks/
    beside the package, as on Colab) gets the notebook's Colab address, never a folder it lacks."""
    from tinylm.cli import train as train_cli
    from tinylm.course import repository

    assert repository.open_notebook_command("03b_train_char_gpt.ipynb").startswith("jupyter lab ")
    fake_package = tmp_path / "site-packages" / "tinylm" / "course" / "repository.py"
    monkeypatch.setattr(repository, "__file__", str(fake_package))
    line = repository.open_notebook_command("03b_train_char_gpt.ipynb")
    assert line.startswith("https://colab.research.google.com/") and "notebooks/03" in line
    monkeypatch.setenv("TINYLM_DATA_DIR", str(tmp_path / "data"))
    assert train_cli._text_to_score("shakespeare-char") is None  # nothing prepared: no eval loss line
    (tmp_path / "data" / "shakespeare_char").mkdir(parents=True)
    (tmp_path / "data" / "shakespeare_char" / "input.txt").write_text("ROMEO: hi\n")
    assert train_cli._text_to_score("shakespeare-char") == tmp_path / "data" / "shakespeare_char" / "input.txt"
    source = (ROOT / "tinylm" / "cli" / "train.py").read_text(encoding="utf-8")
    assert "--text FILE" not in source and "jupyter lab notebooks/" not in source


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`|\*|_(?=\w)|(?<=\w)_", "", heading.strip().lower())
    heading = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.*)$", text, re.M)}


def markdown_sources() -> list[tuple[Path, str]]:
    sources = [(ROOT / d, (ROOT / d).read_text(encoding="utf-8")) for d in DOCUMENTS]
    sources.append((ROOT / "notebooks/SOURCES.md", (ROOT / "notebooks/SOURCES.md").read_text(encoding="utf-8")))
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        sources.append((notebook, "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")))
    return sources


def test_every_link_resolves():
    failures = []
    for path, text in markdown_sources():
        text = re.sub(r"```.*?```|`[^`\n]*`", "", text, flags=re.S)
        own = anchors(path) if path.suffix == ".md" else None
        for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
            if re.match(r"^[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            where = path if not file else (path.parent / file).resolve()
            if not where.exists():
                failures.append(f"{path.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in (own if not file else anchors(where)):
                failures.append(f"{path.relative_to(ROOT)}: {target} (no such heading)")
    assert not failures, "links that do not resolve:\n" + "\n".join(failures)


def test_course_tables_follow_the_notebooks():
    for path, name, table in tables(ROOT):
        text = path.read_text(encoding="utf-8")
        assert replace_table(text, name, table) == text, (
            f"{path.relative_to(ROOT)}'s course table {name} is behind the notebooks: "
            "run python scripts/course_tables.py")


def test_the_guide_entries_read_every_notebook():
    """Each notebook's generated entry finds what its header and exercises hold: the "What you will learn" bullets,
    the papers, what it runs on a GPU, and as many exercise titles as the study-time formula counts exercises."""
    entries = guide_entries(ROOT / "notebooks").split("\n\n### ")
    assert len(entries) == len(LESSONS)
    for lesson, entry in zip(LESSONS, entries):
        fields = dict(re.findall(r"^- \*\*(.+?)\*\*: (.*)$", entry, re.M))
        assert fields["You learn"].count(";") >= 2, f"notebook {lesson.number}: no 'What you will learn' bullets"
        assert re.search(r"\]\(https?://", fields["Papers"]), f"notebook {lesson.number}: no papers"
        assert fields["On a GPU"] not in ("", "not measured."), f"notebook {lesson.number}: nothing on a GPU"
        titles = re.findall(r"\((\d+)\) ", fields["Exercises"])
        assert len(titles) == study_time(ROOT / "notebooks" / lesson.file).exercises, f"notebook {lesson.number}"


def test_the_teachers_table_is_measured_and_live_runs_take_seconds():
    """The teacher's table shows a smoke runtime for every notebook, measured on a named machine (not typed), and each
    is short enough to run live in a lecture, as TEACHING.md promises."""
    measured = smoke_runtimes(ROOT / "notebooks")
    assert measured["machine"], "run python scripts/course_tables.py --measure-smoke"
    assert set(measured["seconds"]) == {lesson.file for lesson in LESSONS}
    slow = {file: s for file, s in measured["seconds"].items() if s is None or not 0 < s <= 120}
    assert not slow, f"notebooks that do not run live in seconds under smoke: {slow}"
    assert "course-table:teaching" in (ROOT / "notebooks" / "TEACHING.md").read_text(encoding="utf-8")


def test_readme_fits_and_starts_with_the_setup():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250
    first_screen = "\n".join(lines[:40])
    assert "download.pytorch.org/whl/cpu" in first_screen
    test_command = "pip install -r requirements-dev.txt -c .ci/constraints.txt && pytest -n auto --dist loadfile"
    assert test_command in first_screen
    assert first_screen.index("whl/cpu") < first_screen.index("pip install -r requirements.txt")


@pytest.mark.parametrize("document", ["README.md", "notebooks/TEACHING.md", "CONTRIBUTING.md"])
def test_front_pages_type_no_measured_figure(document):
    """README, the teacher's page and CONTRIBUTING state no measured figure (scripts/claims.py's sense: a
    decimal, a percentage, a ratio): those live, with the run that printed them, in the notebooks' outputs and the
    course guide, and the course tables are generated."""
    text = re.sub(r"```.*?```", "", (ROOT / document).read_text(encoding="utf-8"), flags=re.S)
    assert figures(prose(text)) == []
