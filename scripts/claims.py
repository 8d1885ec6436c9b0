"""Keeping the notebooks' prose true, and their study time: repository tooling for scripts/course_tables.py,
scripts/refresh_notebook.py and the tests, kept out of the package because no notebook needs it.

`unsupported_figures` lists the figures (decimals, percentages, N× ratios; not integers, code, math or links) that a
notebook's markdown states and neither its saved outputs print nor notebooks/SOURCES.md sources; a figure a re-run
could change must be printed by the code, not typed. `study_time` is the course's formula for a notebook's two
sittings: the lesson (prose words / 90 + non-blank code lines / 4.5 before the exercises + the cpu runtime its last
cell prints, less the recorded cells that REPLAY = True replays, plus those the committed run replayed; constants
fitted to teachers' estimates, CONTRIBUTING.md) and the exercises (10 minutes to write a function, 20 for an
experiment, + what they train, by the notebook's own printed estimate).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tinylm.course.recorded import read_recording, recording_path

# decimals (not part of a longer dotted run such as a version 2.13.0 or an address), percentages and ratios
FIGURE = re.compile(r"(?<![\w.])(\d+(?:,\d{3})*\.\d+(?:\s?%|[×x](?![\w]))?|\d+(?:,\d{3})*\s?%|\d+[×x](?!\s*\d)(?![\w]))"
                    r"(?![\w.]\d)")
NOT_PROSE = re.compile(r"`[^`]*`|\$\$.*?\$\$|\$[^$]*\$|\]\([^)]*\)|https?://\S+|arXiv:\d+\.\d+|<[^>]+>", re.S)
RUNTIME_LINE = re.compile(r"this notebook ran in ([\d.]+) s")
# What an exercise trains, as the notebook estimates it from its own run: "exercise 3 trains for about 95 s"
EXERCISE_RUN_LINE = re.compile(r"exercise (\d+) trains for about ([\d,]+) s\b")
RECORDED_CALL = re.compile(r'recorded\(\s*"([^"]+)",\s*"([^"]+)"')  # tinylm.course.recorded's calls
REPLAYED_LINE = "[replayed: recorded "  # what tinylm.course.recorded prints when it replays
WORDS_PER_MINUTE, CODE_LINES_PER_MINUTE = 90, 4.5  # fitted to teachers' estimates: CONTRIBUTING.md
MINUTES_PER_FUNCTION, MINUTES_PER_EXPERIMENT = 10, 20  # an exercise: write a function, or run an experiment
LESSON_LIMIT_MINUTES = 90  # one sitting
EXERCISES_HEADING = re.compile(r"^#+ .*exercise", re.I)  # the first heading that names an exercise ends the lesson
WORD = re.compile(r"[A-Za-z0-9][\w'.-]*")


def notebook_cells(path: str | Path) -> list[dict]:
    return json.loads(Path(path).read_text(encoding="utf-8"))["cells"]


def cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def output_text(cells: list[dict]) -> str:
    """Everything the code cells printed or showed as text, joined."""
    parts = []
    for cell in cells:
        for output in cell.get("outputs", []):
            if "text" in output:
                parts.append(cell_source({"source": output["text"]}))
            for kind in ("text/plain", "text/markdown", "text/html"):
                if kind in output.get("data", {}):
                    parts.append(cell_source({"source": output["data"][kind]}))
    return "\n".join(parts)


def prose(text: str) -> str:
    """Markdown without its code spans, math, links' addresses and HTML tags."""
    return NOT_PROSE.sub(" ", text)


def figures(text: str) -> list[str]:
    """The figures of a piece of prose, as written (thousands separators and the % or × kept)."""
    return [match.group(1) for match in FIGURE.finditer(prose(text))]


def normalised(figure: str) -> str:
    """The number alone, as code would print it: no thousands separator, no %, no ×."""
    return re.sub(r"[,%×x\s]", "", figure)


def printed_numbers(text: str) -> set[str]:
    """Every number in `text`, normalised, and each decimal's shorter roundings too (a table prints 0.2184, the
    prose says 0.218)."""
    numbers = set()
    for raw in re.findall(r"\d+(?:,\d{3})*(?:\.\d+)?", text):
        number = normalised(raw)
        numbers.add(number)
        if "." in number:
            whole, decimals = number.split(".")
            for keep in range(1, len(decimals)):
                numbers.add(f"{float(number):.{keep}f}")
            numbers.add(str(round(float(number))))
    return numbers


@dataclass(frozen=True)
class Source:
    """A constant the prose may state without printing it: the figure, which notebook (or "*"), and where it is from."""

    figure: str
    notebook: str
    source: str


def read_sources(path: str | Path) -> list[Source]:
    """The rows `| notebook | figure | source |` of notebooks/SOURCES.md (a header row and a separator row first)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        header_or_rule = set(cells[0]) <= set("-: ") or cells[0] == "notebook"
        if len(cells) != 3 or not line.lstrip().startswith("|") or header_or_rule:
            continue
        notebook, figure, source = cells
        if not source:
            raise ValueError(f"{path}: the figure {figure} of {notebook} names no source")
        rows.append(Source(normalised(figure.strip("`")), notebook.strip("`"), source))
    return rows


def unsupported_figures(path: str | Path, sources: list[Source]) -> list[str]:
    """The figures of the notebook's markdown cells found neither in its outputs nor among its sources."""
    cells = notebook_cells(path)
    printed = printed_numbers(output_text(cells))
    name = Path(path).stem
    sourced = {s.figure for s in sources if s.notebook in ("*", name) or name.startswith(s.notebook)}
    missing = []
    for cell in cells:
        if cell["cell_type"] != "markdown":
            continue
        for figure in figures(cell_source(cell)):
            if normalised(figure) not in printed and normalised(figure) not in sourced:
                missing.append(figure)
    return missing


# A command a guide's row or paragraph names as the one that measured its figures: a code span that runs something.
MEASURING_COMMAND = re.compile(r"`(?:python|torchrun|OMP_NUM_THREADS=\d+ python)\b[^`]*`")


def unsupported_guide_figures(path: str | Path, notebooks: list[Path], sources: list[Source]) -> list[str]:
    """The figures of a guide (notebooks/README.md) that no notebook's saved outputs print, no source in `sources`
    (notebook column "guide" or "*") names, and whose paragraph, table row or table caption (the paragraph just above
    the table) names no command that measured them.

    A guide reports runs of the command lines as well as the notebooks'; such a figure must stand beside the command
    that printed it (`MEASURING_COMMAND`), so a reader can re-run it. Fenced code blocks are not prose, and a block
    generated from the notebooks (between `<!-- course-table:... -->` markers) is checked in its notebook."""
    printed: set[str] = set()
    for notebook in notebooks:
        printed |= printed_numbers(output_text(notebook_cells(notebook)))
    sourced = {s.figure for s in sources if s.notebook in ("*", "guide")}
    generated = r"<!-- course-table:.*?<!-- /course-table -->"
    text = re.sub(r"```.*?```|" + generated, "", Path(path).read_text(encoding="utf-8"), flags=re.S)
    missing, caption = [], ""
    for block in re.split(r"\n\s*\n", text):
        is_table = block.lstrip().startswith("|")
        if is_table and MEASURING_COMMAND.search(caption):
            continue  # the paragraph just above a table is its caption: the command there measured every row
        for unit in block.splitlines() if is_table else [block]:  # a table's rows each on their own
            if not MEASURING_COMMAND.search(unit):
                missing += [f for f in figures(unit) if normalised(f) not in printed and normalised(f) not in sourced]
        caption = block
    return missing


@dataclass(frozen=True)
class StudyTime:
    """The parts of the course's formula for one notebook: the lesson's prose and code (before the exercises), the
    cpu runtime its last cell printed, the exercises and the seconds of training the notebook says they take."""

    prose_words: int
    code_lines: int
    runtime_seconds: float | None  # None: the notebook does not print its runtime
    exercises: int
    experiments: int = 0  # of the exercises, those whose title names an experiment
    exercise_run_seconds: float = 0.0
    replayed_seconds: float = 0.0  # what the recorded cells took live: REPLAY = True skips it

    @property
    def class_runtime_seconds(self) -> float | None:
        """The cpu runtime with REPLAY = True: the live run less its recorded cells (which replay in a blink)."""
        return None if self.runtime_seconds is None else max(self.runtime_seconds - self.replayed_seconds, 0.0)

    @property
    def reading_minutes(self) -> float:
        """Reading (or presenting) the lesson, without its run."""
        return self.prose_words / WORDS_PER_MINUTE + self.code_lines / CODE_LINES_PER_MINUTE

    @property
    def lesson_minutes(self) -> float:
        """The first sitting: reading the lesson and running it under cpu, its long cells replayed. The committed run
        leaves the exercises undone, so the notebook's printed runtime is its lesson's."""
        return self.reading_minutes + (self.class_runtime_seconds or 0.0) / 60

    @property
    def exercise_minutes(self) -> float:
        """The second sitting: each exercise by its kind, and what they train."""
        functions = self.exercises - self.experiments
        return (MINUTES_PER_FUNCTION * functions + MINUTES_PER_EXPERIMENT * self.experiments
                + self.exercise_run_seconds / 60)


EXERCISE = re.compile(r"\s*(#{2,4}\s*Exercise\b|\*\*\d+\.)")  # "### Exercise 2: ..." or "**2. Title.**"


def prose_words(markdown: str) -> int:
    """Words a reader reads: solutions folded in <details> left out."""
    return len(WORD.findall(re.sub(r"<details>.*?</details>", " ", markdown, flags=re.S)))


def study_time(path: str | Path) -> StudyTime:
    """The parts of the course's study-time formula for one notebook. The lesson runs up to the first heading that
    names an exercise ("## Exercises"); exercises are counted from the "## Exercises" heading on: each
    "### Exercise ..." heading or "**N. ...**" item, an experiment if its title names one. The runtime is what the
    notebook printed (`RUNTIME_LINE`), and an exercise's training what a line `EXERCISE_RUN_LINE` printed for it
    (none: 0)."""
    cells = notebook_cells(path)
    words = code = exercises = experiments = 0
    in_lesson, in_exercises = True, False
    for cell in cells:
        source = cell_source(cell)
        if cell["cell_type"] == "code":
            code += in_lesson * sum(1 for line in source.splitlines() if line.strip())
            continue
        if cell["cell_type"] != "markdown":
            continue
        lines = source.splitlines()
        if in_lesson:
            end = next((i for i, line in enumerate(lines) if EXERCISES_HEADING.match(line)), len(lines))
            words += prose_words("\n".join(lines[:end]))
            in_lesson = end == len(lines)
        for line in lines:
            in_exercises = in_exercises or bool(re.match(r"#{1,3}\s*Exercises\b", line))
            is_exercise = in_exercises and bool(EXERCISE.match(line))
            exercises += is_exercise
            title = line.split("**")[1] if line.lstrip().startswith("**") else line  # "**3. Title.** Text"
            experiments += is_exercise and "experiment" in title.lower()
    printed = output_text(cells)
    runtime = RUNTIME_LINE.search(printed)
    trains = {number: float(seconds.replace(",", "")) for number, seconds in EXERCISE_RUN_LINE.findall(printed)}
    seconds = {call: read_recording(*call)["seconds"] for call in recordings_read(cells)
               if recording_path(*call).is_file()}  # one not recorded yet replays nothing
    # A committed run that replayed a recording (REPLAY = True) did not spend its seconds: live, it would have.
    live = float(runtime.group(1)) + sum(seconds.get(call, 0.0) for call in recordings_replayed(cells)) \
        if runtime else None
    return StudyTime(words, code, live, exercises, experiments, sum(trains.values(), 0.0), sum(seconds.values()))


def recordings_replayed(cells: list[dict]) -> list[tuple[str, str]]:
    """(notebook, name) of each recording that the saved outputs show replayed (tinylm.course.recorded's line)."""
    return [call for cell in cells if cell["cell_type"] == "code" and REPLAYED_LINE in output_text([cell])
            for call in RECORDED_CALL.findall(cell_source(cell))]


def recordings_read(cells: list[dict]) -> list[tuple[str, str]]:
    """(notebook, name) of each `recorded(...)` call in the code cells: the long runs REPLAY = True replays."""
    code = "\n".join(cell_source(cell) for cell in cells if cell["cell_type"] == "code")
    return RECORDED_CALL.findall(code)


def cell_numbers(cells: list[dict]) -> dict[int, list[str]]:
    """Per code cell (its index), the numbers its outputs printed, in order."""
    numbers = {}
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            text = output_text([cell])
            numbers[index] = re.findall(r"-?\d+(?:,\d{3})*(?:\.\d+)?%?", text)
    return numbers


def moved_figures(old: list[dict], new: list[dict]) -> list[str]:
    """What changed between two runs of one notebook: for each code cell (by index), each printed number that differs
    at the same position of the cell's output, as 'cell 12: 1.2345 -> 1.2401'; a cell whose outputs have a different
    number of numbers is reported as such. The cells must be the same (the same code, re-run)."""
    before, after = cell_numbers(old), cell_numbers(new)
    lines = []
    for index in sorted(set(before) | set(after)):
        was, now = before.get(index, []), after.get(index, [])
        if len(was) != len(now):
            lines.append(f"cell {index}: {len(was)} numbers before, {len(now)} after")
            continue
        changes = [f"{a} -> {b}" for a, b in zip(was, now) if a != b]
        if changes:
            lines.append(f"cell {index}: " + ", ".join(changes))
    return lines
