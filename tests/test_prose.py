"""Prose a maintainer can keep current: every module docstring of tinylm/ says what and why in 15 lines or fewer,
every command's --help (each mode's too, and `python -m tinylm --help`) fits one screen of 40 rows of 80 columns as a
terminal shows it, long lines wrapped, and no code, comment or --help states a figure measured on one machine or names
that machine (figures belong in the course guide or docs/notes, beside the command that measured them)."""

import ast
import math
import re
from pathlib import Path

import pytest

import tinylm.cli
from tinylm.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
DOCSTRING_LINES, HELP_LINES, SCREEN_COLUMNS = 15, 40, 80
MACHINE = re.compile(
    r"\b(EPYC|Xeon|Ryzen|Threadripper|Opteron|Graviton|Zen ?[1-5]|Apple M[1-4]|M[1-4] (Pro|Max|Ultra)|Core i[3579]|"
    r"Skylake|Cascade Lake|Ice Lake|Sapphire Rapids)\b"
    r"|(AVX2|AVX-?512)[^\n]{0,60}?\d+(\.\d+)? ?(ms|µs|tokens/s|times|x\b|×)"  # a figure measured on a CPU kind
    r"|course's (\d-core|machine)")


def modules() -> list[Path]:
    return sorted(path for path in (ROOT / "tinylm").rglob("*.py") if "__pycache__" not in path.parts)


def docstring_lines(path: Path) -> int:
    """Lines of a module's docstring as the before-stop check counts them (ast.get_docstring, cleaned)."""
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    return docstring.count("\n") + 1 if docstring else 0


def test_every_module_docstring_fits_fifteen_lines():
    long = {str(path.relative_to(ROOT)): lines for path in modules()
            if (lines := docstring_lines(path)) > DOCSTRING_LINES}
    assert not long, ("module docstrings over 15 lines (say what and why; design reasoning to CONTRIBUTING.md or "
                      f"the function it explains, figures to the course guide): {long}")


def helps(command: str, monkeypatch) -> dict[str, str]:
    """`python -m tinylm.<command> --help` and each of its modes' --help, as printed on an 80-column screen."""
    from tinylm.cli import console

    monkeypatch.setenv("COLUMNS", str(SCREEN_COLUMNS))
    built = []

    def capture(parser, args=None, namespace=None):
        built.append(parser)
        raise SystemExit(0)

    monkeypatch.setattr(console.CommandParser, "parse_args", capture)
    with pytest.raises(SystemExit):
        tinylm.cli.command_line(command).parse_args(["--help"])
    assert built, f"tinylm/cli/{command}.py builds no CommandParser"
    parser = built[0]
    texts = {command: parser.format_help()}
    subcommands = parser.subcommands
    for name, sub in (subcommands.choices.items() if subcommands else []):
        texts[f"{command} {name}"] = sub.format_help()
    return texts


def screen_rows(text: str) -> int:
    """The rows `text` takes on a terminal SCREEN_COLUMNS wide, which wraps a longer line onto the next rows."""
    return sum(max(1, math.ceil(len(line) / SCREEN_COLUMNS)) for line in text.splitlines())


def screen_problems(name: str, text: str) -> list[str]:
    """Why `text`, a --help, does not fit one screen: over HELP_LINES rows, a line above its examples (a description
    argparse prints as written, or a usage line) wider than the screen, no examples, or an example with a comment."""
    problems = []
    if (rows := screen_rows(text)) > HELP_LINES:
        problems.append(f"{name}: {rows} rows at {SCREEN_COLUMNS} columns")
    above, _, examples = text.partition("\nexamples:\n")
    problems += [f"{name}: {len(line)} columns: {line.strip()[:60]}" for line in above.splitlines()
                 if len(line) > SCREEN_COLUMNS]
    if not examples.strip():
        problems.append(f"{name}: no examples")
    problems += [f"{name}: an example's comment belongs in an option's help: {line.strip()[:60]}"
                 for line in examples.splitlines() if " #" in line]
    return problems


def test_screen_rows_count_what_a_terminal_wraps():
    assert screen_rows("a\n\n" + "x" * SCREEN_COLUMNS + "\n" + "y" * (SCREEN_COLUMNS + 1)) == 5
    wide = "usage: x\n\n" + "d" * (SCREEN_COLUMNS + 1) + "\n\nexamples:\n  x --a   # b\n"
    assert len(screen_problems("x", wide)) == 2 and screen_problems("x", "usage: x\n") == ["x: no examples"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_help_fits_one_screen(command, monkeypatch):
    texts = helps(command, monkeypatch)
    problems = [problem for name, text in texts.items() for problem in screen_problems(name, text)]
    assert not problems, f"--help that does not fit {HELP_LINES} rows of {SCREEN_COLUMNS}:\n" + "\n".join(problems)


def test_the_help_count_finds_every_mode(monkeypatch):
    texts = helps("bench", monkeypatch)
    assert set(texts) == {"bench", *(f"bench {mode}" for mode in
                                      ("train", "compile", "memory", "sharding", "decode", "cache", "bpe",
                                       "speedrun"))}
    eval_modes = ("loss", "hellaswag", "core", "benchmark", "compare", "harness")
    assert set(helps("eval", monkeypatch)) == {"eval", *(f"eval {mode}" for mode in eval_modes)}


def test_no_machine_or_its_figures_in_the_package():
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in modules()
             for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if MACHINE.search(line)]
    assert not found, "machine-specific figures belong in the course guide or docs/notes:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "less trustworthy: on the course's 2-core AMD EPYC (AVX2), idle, 1.39 times the fastest",
    "measured on one 2-core AVX2 CPU: 1.6 to 2.8 times the time",
    "took 1.9 ms on an Intel Xeon",
    "on an Apple M2 it runs",
    "an AVX-512 CPU with native bf16: 9.3 ms per step",
])
def test_the_machine_check_finds_what_it_must(line):
    assert MACHINE.search(line)


@pytest.mark.parametrize("line", [
    "a CPU without native bf16 runs it many times slower than fp32",
    "`cpu` (a few minutes on a 2-core laptop, and the model must really learn)",
    "ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 limits it to AVX2",
    "H100 SXM 989 bf16 TFLOP/s, from NVIDIA's datasheets",
])
def test_the_machine_check_leaves_design_facts_alone(line):
    assert not MACHINE.search(line)


def test_the_command_list_fits_one_screen():
    from tinylm.cli import USAGE

    assert screen_problems("tinylm", USAGE) == []
