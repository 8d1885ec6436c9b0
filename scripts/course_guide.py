"""The course tables and notebook entries of README.md, the course guide (notebooks/README.md) and the teacher's
page (notebooks/TEACHING.md), and each notebook header's time paragraph, generated from the notebooks so that they
cannot fall behind them; `LESSONS` lists the course's notebooks in order. Repository tooling for
scripts/course_tables.py, scripts/refresh_notebook.py and the tests, kept out of the package: no notebook needs it.

A notebook's times come from `study_time` (claims.py, beside this file); its guide entry from the notebook itself
("What you will learn", the papers, the `gpu` row or "On a GPU" paragraph, the exercises' titles); the teacher's
smoke runtimes from notebooks/smoke_runtimes.json (`python scripts/course_tables.py --measure-smoke`).
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from claims import (
    CODE_LINES_PER_MINUTE,
    MINUTES_PER_EXPERIMENT,
    MINUTES_PER_FUNCTION,
    WORDS_PER_MINUTE,
    StudyTime,
    cell_source,
    notebook_cells,
    study_time,
)


@dataclass(frozen=True)
class Lesson:
    file: str
    title: str
    builds: str  # one line: what you build
    needs: str  # prerequisites: notebooks before it, and what else

    @property
    def number(self) -> str:
        """As the course names it: "06a_gpt2_124m_budget_and_ddp.ipynb" is notebook 6a."""
        return self.file.split("_")[0].lstrip("0") or "0"


LESSONS = [
    Lesson("00_tensors_and_autograd.ipynb", "Tensors, autograd and gradient descent",
           "a scalar autograd checked against torch.autograd, gradient descent by hand, nn.Module, SGD and AdamW",
           "Python, a little linear algebra"),
    Lesson("01_shakespeare_data_and_bigram.ipynb", "Shakespeare: data and a bigram model",
           "a character tokenizer, batches of windows and a bigram model: the baseline loss", "0, or PyTorch basics"),
    Lesson("02a_self_attention_from_scratch.ipynb", "Self-attention from scratch",
           "causal self-attention: one head, many heads, all heads at once", "1; matrix products"),
    Lesson("02b_from_attention_to_a_gpt.ipynb", "From attention to a GPT",
           "the transformer block, a GPT, GPT-2's initialisation, and what each piece buys", "2a"),
    Lesson("03a_training_loop.ipynb", "The training loop",
           "the training loop by hand (AdamW, warmup + cosine, clipping, accumulation), checked against the Trainer",
           "0, 2b"),
    Lesson("03b_train_char_gpt.ipynb", "Training a character GPT",
           "a character GPT trained on Shakespeare, its curves, baseline, sample, context use and checkpoint",
           "1, 3a"),
    Lesson("04_bpe_tokenization.ipynb", "How GPT-2 tokenizes text",
           "byte-level BPE from scratch, checked against tiktoken", "1"),
    Lesson("05_tinystories.ipynb", "TinyStories: a story model",
           "memmapped token files, mixed precision, bits per byte, a story model", "3, 4"),
    Lesson("06a_gpt2_124m_budget_and_ddp.ipynb", "GPT-2 124M: the budget and data-parallel training",
           "the compute budget, token shards, DDP and a 2-process torchrun run", "3, 5"),
    Lesson("06b_gpt2_124m_evaluation.ipynb", "Evaluation as the field does it",
           "log-likelihood scoring, a story cloze and paired tests, CORE, the harness, torch.compile and MFU",
           "3, 5 (their runs, else it trains stand-ins)"),
    Lesson("06c_memory_and_sharding.ipynb", "Memory and sharding",
           "a step's memory account, activation checkpointing, streaming attention, ZeRO-1 and FSDP", "3, 6a"),
    Lesson("07_generation.ipynb", "Generation",
           "temperature, top-k/top-p, a repetition penalty and the KV cache",
           "3 (and 5's run, else it trains stand-ins)"),
    Lesson("08a_modern_block.ipynb", "The modern block",
           "RMSNorm, RoPE, SwiGLU and grouped-query attention; Llama's block raced against GPT-2's", "3, 7"),
    Lesson("08b_mixture_of_experts.ipynb", "Mixture of experts",
           "a routed MLP, collapse, the auxiliary loss and loss-free balancing, ablated", "8a"),
    Lesson("09_chat_finetuning.ipynb", "Chat fine-tuning",
           "ChatML, the answer-only loss and supervised fine-tuning of a chat model", "5, 7"),
    Lesson("10_lora_and_preference_tuning.ipynb", "LoRA and preference tuning",
           "LoRA adapters and DPO from its derivation", "9 (its runs)"),
    Lesson("11_rl_verifiable_rewards.ipynb", "Reinforcement learning with verifiable rewards",
           "GRPO with rewards a program checks", "7, 9"),
    Lesson("12_speedrun_on_a_laptop.ipynb", "Speedrun on a laptop",
           "Muon and the speedrun's model changes, measured as loss per second", "3, 8a"),
    Lesson("13_scaling_laws_on_a_laptop.ipynb", "Scaling laws on a laptop",
           "IsoFLOP profiles and power-law fits on your own sweep", "3, 6a"),
    Lesson("14_your_own_model.ipynb", "Your own model",
           "a BPE trained on your text, characters vs GPT-2 vs your BPE in bits per byte, an export to transformers "
           "and llama.cpp", "4, 5"),
    Lesson("15_reasoning_with_a_tool.ipynb", "Reasoning with a tool",
           "a calculator in the token stream, SFT that teaches a real model to call it, and GRPO against expert "
           "iteration on word problems", "9, 10, 11"),
]

SMOKE_RUNTIMES = "smoke_runtimes.json"  # in notebooks/: {"machine": ..., "seconds": {notebook file: seconds}}
START = "<!-- course-table:{} (generated by scripts/course_tables.py from the notebooks) -->"
END = "<!-- /course-table -->"


def runtime_text(seconds: float | None) -> str:
    if seconds is None:
        return "see the notebook"
    return f"{seconds:,.0f} s" if seconds < 600 else f"{seconds / 60:,.0f} min"


def cpu_runtime_text(study: StudyTime) -> str:
    """The cpu runtime a class waits for: with REPLAY = True where the notebook records its long cells."""
    if not study.replayed_seconds:
        return runtime_text(study.runtime_seconds)
    live = runtime_text(study.runtime_seconds)
    return f"{runtime_text(study.class_runtime_seconds)} with `REPLAY = True`, {live} live"


def minutes_text(minutes: float) -> str:
    return f"{max(1, round(minutes))} min"


FORMULA = (f"lesson = prose words / {WORDS_PER_MINUTE} + non-blank code lines / {CODE_LINES_PER_MINUTE} before the "
           f"exercises + the cpu runtime (long cells replayed); exercises (a second sitting) = {MINUTES_PER_FUNCTION} "
           f"minutes per function to write, {MINUTES_PER_EXPERIMENT} per experiment, + what they train")
TIME_PARAGRAPH = "**How long it takes**"


def kinds(study: StudyTime) -> str:
    """The exercises' minutes by kind: "10 minutes each", "20 minutes, an experiment", or both rates."""
    functions = study.exercises - study.experiments
    if study.exercises == 1:
        return f"{MINUTES_PER_EXPERIMENT} minutes, an experiment" if study.experiments else \
            f"{MINUTES_PER_FUNCTION} minutes, a function to write"
    if not study.experiments or not functions:
        return f"{MINUTES_PER_EXPERIMENT if study.experiments else MINUTES_PER_FUNCTION} minutes each"
    return f"{MINUTES_PER_FUNCTION} minutes per function, {MINUTES_PER_EXPERIMENT} per experiment"


def time_paragraph(study: StudyTime) -> str:
    """The header's paragraph on the two sittings, wrapped as the notebooks' markdown is."""
    run = "" if study.runtime_seconds is None else f" and the `cpu` run's {cpu_runtime_text(study)}"
    trains = f", and {runtime_text(study.exercise_run_seconds)} of training" if study.exercise_run_seconds else ""
    text = (f"{TIME_PARAGRAPH}: a lesson of about {round(study.lesson_minutes)} minutes (reading, code{run}, by the "
            f"course's formula), then a second sitting of about {round(study.exercise_minutes)} minutes for the "
            f"{'exercise' if study.exercises == 1 else f'{study.exercises} exercises'} ({kinds(study)}{trains}).")
    return textwrap.fill(text, width=116, break_long_words=False, break_on_hyphens=False)


def with_time_paragraph(text: str, paragraph: str, prefix: str = "") -> str:
    """`text` (a notebook's first markdown cell, or its .py twin with each line after `prefix`) with its
    "**How long it takes**" paragraph replaced by `paragraph`."""
    blank = re.escape(prefix.rstrip())  # the line that ends a paragraph: empty, or "#" in a .py twin
    pattern = re.compile(rf"^{re.escape(prefix + TIME_PARAGRAPH)}.*?(?=\n{blank}\n|\Z)", re.S | re.M)
    if not pattern.search(text):
        raise ValueError(f"no paragraph starting {TIME_PARAGRAPH!r}")
    return pattern.sub(lambda _: "\n".join(prefix + line for line in paragraph.splitlines()), text, count=1)


def rewrite_time_paragraph(notebook: Path) -> bool:
    """Write the header's time paragraph of `notebook` and of its .py twin (notebooks/py/) from `study_time`;
    True when either changed. The paragraph's own words count towards the lesson, so it is rewritten until it
    states the time it makes (a second pass at most, in practice)."""
    changed = False
    for _ in range(3):
        if not _rewrite_time_paragraph_once(notebook):
            break
        changed = True
    return changed


def _rewrite_time_paragraph_once(notebook: Path) -> bool:
    paragraph = time_paragraph(study_time(notebook))
    data = json.loads(notebook.read_text(encoding="utf-8"))
    first = next(cell for cell in data["cells"] if cell["cell_type"] == "markdown")
    source = with_time_paragraph(cell_source(first), paragraph)
    changed = source != cell_source(first)
    first["source"] = source.splitlines(keepends=True)
    twin = notebook.parent / "py" / notebook.with_suffix(".py").name
    twin_text = twin.read_text(encoding="utf-8")
    new_twin = with_time_paragraph(twin_text, paragraph, prefix="# ")
    if changed or new_twin != twin_text:
        notebook.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        twin.write_text(new_twin, encoding="utf-8")
        return True
    return False


def stale_time_paragraphs(notebooks: Path) -> list[str]:
    """The notebooks whose header (or .py twin) does not state `time_paragraph` of their own study time."""
    stale = []
    for lesson in LESSONS:
        path = notebooks / lesson.file
        paragraph = time_paragraph(study_time(path))
        first = next(cell for cell in notebook_cells(path) if cell["cell_type"] == "markdown")
        twin = (notebooks / "py" / path.with_suffix(".py").name).read_text(encoding="utf-8")
        if (paragraph not in cell_source(first)
                or "\n".join("# " + line for line in paragraph.splitlines()) not in twin):
            stale.append(lesson.file)
    return stale


def readme_table(notebooks: Path, link_prefix: str = "notebooks/") -> str:
    """README's course map: number, title linked, what you build, the cpu runtime."""
    rows = ["| # | notebook | you build | cpu runtime |", "|---|---|---|---|"]
    for lesson in LESSONS:
        runtime = cpu_runtime_text(study_time(notebooks / lesson.file))
        rows.append(f"| {lesson.number} | [{lesson.title}]({link_prefix}{lesson.file}) | {lesson.builds} | {runtime} |")
    return "\n".join(rows)


def guide_table(notebooks: Path) -> str:
    """The course guide's table: what each notebook assumes, its lesson and exercises by the formula (under the
    table) and its cpu runtime."""
    rows = ["| # | notebook | you build | after | lesson | exercises | cpu runtime | gpu |",
            "|---|---|---|---|---|---|---|---|"]
    for lesson in LESSONS:
        study = study_time(notebooks / lesson.file)
        rows.append(f"| {lesson.number} | [{lesson.title}]({lesson.file}) | {lesson.builds} | {lesson.needs} | "
                    f"{minutes_text(study.lesson_minutes)} | {minutes_text(study.exercise_minutes)} | "
                    f"{cpu_runtime_text(study)} | not measured |")
    return "\n".join(rows) + f"\n\nBy the course's formula (`study_time` in scripts/claims.py): {FORMULA}."


def smoke_runtimes(notebooks: Path) -> dict:
    """What `scripts/course_tables.py --measure-smoke` recorded: the machine and, per notebook file, the seconds its
    smoke run printed; {"machine": None, "seconds": {}} when nothing was measured yet."""
    path = notebooks / SMOKE_RUNTIMES
    if not path.exists():
        return {"machine": None, "seconds": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def teaching_table(notebooks: Path) -> str:
    """The teacher's table: per notebook, the time to present it (the lesson's prose and code by the course's
    formula, rounded to 5 minutes), its runtime under smoke (run live in class) and under cpu (its saved outputs)."""
    measured = smoke_runtimes(notebooks)
    rows = ["| # | notebook | present | smoke run | cpu run | gpu run |", "|---|---|---|---|---|---|"]
    for lesson in LESSONS:
        study = study_time(notebooks / lesson.file)
        present = max(5, 5 * round(study.reading_minutes / 5))
        smoke = measured["seconds"].get(lesson.file)
        rows.append(f"| {lesson.number} | [{lesson.title}]({lesson.file}) | about {present} min | "
                    f"{'not measured yet' if smoke is None else runtime_text(smoke)} | "
                    f"{cpu_runtime_text(study)} | not measured |")
    present = "Present: the lesson's reading time by the course's formula (CONTRIBUTING.md), rounded to 5 minutes."
    if measured["machine"] is None:
        return "\n".join(rows) + f"\n\n{present} Smoke runs not measured yet: scripts/course_tables.py --measure-smoke."
    caption = f"{present} Smoke runs measured on: {measured['machine']}, in course order (as a class runs them)."
    return "\n".join(rows) + "\n\n" + caption


def _header_paragraphs(notebook: Path) -> list[str]:
    """The first markdown cell's paragraphs: its blocks between blank lines (a table is one block of rows)."""
    first = next(cell for cell in notebook_cells(notebook) if cell["cell_type"] == "markdown")
    return [block.strip() for block in re.split(r"\n\s*\n", cell_source(first)) if block.strip()]


def _learned(paragraphs: list[str]) -> str:
    """The "What you will learn" bullets (the paragraph of that heading, or the one after it), joined by semicolons."""
    at = next((i for i, p in enumerate(paragraphs) if p.startswith("**What you will learn**")), None)
    if at is None:
        return "see the notebook."
    block = paragraphs[at].partition("\n")[2] or (paragraphs[at + 1] if at + 1 < len(paragraphs) else "")
    items = re.split(r"\n- ", "\n" + block)[1:]
    return _sentence("; ".join(" ".join(item.split()).rstrip(";.") for item in items))


def _sentence(text: str) -> str:
    """`text` ending in one full stop (or its own question mark)."""
    text = text.rstrip(" .;")
    return text if text.endswith(("?", "!")) else text + "."


def _on_a_gpu(paragraphs: list[str]) -> str:
    """The profile table's `gpu` row (what runs, and its time), else the paragraph that starts "On a GPU"."""
    for paragraph in paragraphs:
        for row in paragraph.splitlines():
            if row.startswith("| `gpu`"):
                what, time = (cell.strip() for cell in row.strip("| \n").split("|")[1:3])
                return what if time.startswith("not measured") else f"{what} ({time})"
    paragraph = next((p for p in paragraphs if p.startswith("On a GPU")), None)
    if paragraph is None:
        return "not measured"
    return re.sub(r"^On a GPU,?\s*(\(`gpu` profile\))?\s*", "", " ".join(paragraph.split()))


def _papers(paragraphs: list[str]) -> str:
    """Every link of the paragraph that names the papers (or where the ideas come from), in order."""
    block = next((p for p in paragraphs if re.match(r"\*\*(Papers|Where the ideas come from)", p)), "")
    links = re.findall(r"\[([^\]]+)\]\(([^)\s]+)\)", block)
    return ", ".join(f"[{' '.join(text.split())}]({url})" for text, url in links)


def _exercises(notebook: Path) -> str:
    """The exercises' titles, from the "## Exercises" heading on ("### Exercise 2: title" or "**2. Title.**")."""
    titles, started = [], False
    for cell in notebook_cells(notebook):
        if cell["cell_type"] != "markdown":
            continue
        for line in cell_source(cell).splitlines():
            started = started or bool(re.match(r"#{1,3}\s*Exercises\b", line))
            heading = re.match(r"#{2,4}\s*Exercise\s*(\d+):\s*(.+)", line) if started else None
            bold = re.match(r"\s*\*\*(\d+)\.\s*(.+?)\*\*", line) if started else None
            if heading or bold:
                number, title = (heading or bold).groups()
                titles.append(f"({number}) {title.strip().rstrip('.')}")
    return "; ".join(titles) or "none"


def guide_entries(notebooks: Path) -> str:
    """The course guide's entry per notebook, read from the notebook: what you learn, its exercises, what it runs on a
    GPU and its papers."""
    entries = []
    for lesson in LESSONS:
        path = notebooks / lesson.file
        paragraphs = _header_paragraphs(path)
        entries.append("\n".join([
            f"### {lesson.number}. [{lesson.title}]({lesson.file})", "",
            f"- **You learn**: {_learned(paragraphs)}",
            f"- **Exercises**: {_sentence(_exercises(path))}",
            f"- **On a GPU**: {_sentence(_on_a_gpu(paragraphs))}".replace("](README.md#", "](#"),
            f"- **Papers**: {_sentence(_papers(paragraphs))}"]))
    return "\n\n".join(entries)


def replace_table(text: str, name: str, table: str) -> str:
    """`text` with the table between the markers named `name` replaced by `table` (the markers must be there)."""
    start = START.format(name)
    pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ValueError(f"no {start!r} ... {END!r} markers")
    return pattern.sub(lambda _: f"{start}\n{table}\n{END}", text)


def tables(root: Path) -> list[tuple[Path, str, str]]:
    """Every generated block: (the file that shows it, its marker name, what the notebooks give)."""
    notebooks = root / "notebooks"
    return [(root / "README.md", "readme", readme_table(notebooks)),
            (notebooks / "README.md", "guide", guide_table(notebooks)),
            (notebooks / "README.md", "entries", guide_entries(notebooks)),
            (notebooks / "TEACHING.md", "teaching", teaching_table(notebooks))]
