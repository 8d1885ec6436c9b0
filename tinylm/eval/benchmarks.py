"""The benchmarks the field reports, read from their released files into items a scorer can render.

Four kinds of item, after llm-foundry's formats (which DCLM's CORE uses): a **multiple-choice** question (one query,
several continuations, the right one's index), a **schema** item (several contexts, one continuation: Winograd's
pronoun resolved each way), a **cloze** (a context and the continuation the model must produce greedily: LAMBADA's
last word) and a **generative** problem (GSM8K: a question, and a worked answer ending `#### N`). A `Task` holds the
items with how the field prompts them: shots, the delimiter before each continuation, and the accuracy of guessing.

Each file is pinned by its public repository, commit and sha256 (eval_sources.json) and copied from the offline
mirror's `eval/` or downloaded into the data folder: CORE's tasks in llm-foundry's files (`core/`), and PIQA, LAMBADA,
MMLU and GSM8K as their authors released them. CORE's shots and delimiters are DCLM's `heavy.yaml`, its baselines
`eval_meta_data.csv`.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Union

from ..download import RemoteFile, fetch
from ..errors import InputError, MissingFile
from ..paths import data_dir


@dataclass(frozen=True)
class MultipleChoice:
    query: str
    choices: tuple[str, ...]
    gold: int


@dataclass(frozen=True)
class Schema:
    contexts: tuple[str, ...]
    continuation: str
    gold: int


@dataclass(frozen=True)
class Cloze:
    context: str
    continuation: str


@dataclass(frozen=True)
class Generative:
    question: str
    answer: str  # the worked solution, ending "#### N"


Item = Union[MultipleChoice, Schema, Cloze, Generative]
KINDS = {MultipleChoice: "multiple_choice", Schema: "schema", Cloze: "language_modeling", Generative: "generative"}


@dataclass(frozen=True)
class Task:
    """A benchmark: its items, how many solved examples precede each (`shots`), the text between a query and its
    continuation (`delimiter`), the accuracy of a random guess (`baseline`, a fraction), where the shots come from
    (`shot_pool`: None for the task's other items, as DCLM draws them; `pools` per subject) and a sentence naming
    the file."""

    name: str
    items: list[Item]
    shots: int = 0
    delimiter: str = " "
    baseline: float = 0.0
    shot_pool: list[Item] | None = None
    source: str = ""
    subjects: list[str] | None = None  # per item, its subject, where shots come from that subject's pool (MMLU)
    pools: dict[str, list[Item]] | None = None

    def preamble(self, index: int) -> str:
        """The line before an item's shots: MMLU's names the subject."""
        if self.subjects is None:
            return ""
        subject = self.subjects[index].replace("_", " ")
        return f"The following are multiple choice questions (with answers) about {subject}.\n\n"

    @property
    def kind(self) -> str:
        return KINDS[type(self.items[0])] if self.items else "empty"


def _pinned() -> dict[str, RemoteFile]:
    table = json.loads(resources.files(__package__).joinpath("eval_sources.json").read_text(encoding="utf-8"))
    return {where: RemoteFile(f"https://raw.githubusercontent.com/{repo}/{commit}/{path}", sha256, where)
            for where, repo, commit, path, sha256 in table["files"]}


EVAL_FILES = _pinned()  # "eval/core/copa.jsonl" -> its download, pinned by sha256 (eval_sources.json)


def eval_file(relative: str) -> Path:
    """A benchmark file by its path under eval/, in the data folder: copied from the mirror where one is set, else
    downloaded from its pinned repository and commit, its sha256 checked either way (tinylm.download.fetch)."""
    return fetch(EVAL_FILES[f"eval/{relative}"], data_dir() / "eval" / relative)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as error:
                    raise InputError(f"{path}, line {number}: not JSON ({error.msg})") from None
    return records


def core_item(record: dict[str, Any]) -> Item:
    """One line of llm-foundry's formats."""
    if "choices" in record:
        return MultipleChoice(record["query"], tuple(record["choices"]), int(record["gold"]))
    if "context_options" in record:
        return Schema(tuple(record["context_options"]), record["continuation"], int(record["gold"]))
    if "context" in record:
        return Cloze(record["context"], record["continuation"])
    raise InputError(f"not an llm-foundry item (choices, context_options or context): keys {sorted(record)}")


# CORE's 22 tasks (DCLM's `low_variance_datasets`) and the file of each; hellaswag is read from the mirror's own
# HellaSwag file (tinylm.eval.hellaswag); squad and coqa are not in the mirror (too large upstream).
CORE_FILES = {"winograd": "winograd_wsc.jsonl", "jeopardy": "jeopardy_all.jsonl"}
NOT_MIRRORED = ("squad", "coqa")


@dataclass(frozen=True)
class CoreSpec:
    name: str
    kind: str
    shots: int
    delimiter: str
    baseline: float  # a fraction


def core_specs() -> list[CoreSpec]:
    """CORE's tasks in DCLM's order, with their shots and delimiters (heavy.yaml) and baselines
    (eval_meta_data.csv, in percent there)."""
    import yaml  # PyYAML: DCLM's task list is YAML

    aggregation = json.loads(eval_file("core/additional_aggregation.json").read_text(encoding="utf-8"))
    tasks = {task["label"]: task for task in
             yaml.safe_load(eval_file("core/heavy.yaml").read_text(encoding="utf-8"))["icl_tasks"]}
    with open(eval_file("core/eval_meta_data.csv"), encoding="utf-8", newline="") as f:
        baselines = {row["Eval Task"]: float(row["Random baseline"]) / 100 for row in csv.DictReader(f)}
    return [CoreSpec(name, tasks[name]["icl_task_type"], tasks[name]["num_fewshot"][0],
                     tasks[name].get("continuation_delimiter", " "), baselines[name])
            for name in aggregation["low_variance_datasets"]]


def core_task(spec: CoreSpec) -> Task:
    """One of CORE's tasks: llm-foundry's file, or for HellaSwag the official validation file (tinylm.eval.hellaswag,
    which says when offline it scores the mirror's substitute)."""
    if spec.name.startswith("hellaswag"):
        from .hellaswag import locate_val, read_examples

        val = locate_val()
        items = [MultipleChoice(ex.ctx, ex.endings, ex.label) for ex in read_examples(val.path)]
        source = val.description
    else:
        name = CORE_FILES.get(spec.name, f"{spec.name}.jsonl")
        items = [core_item(record) for record in read_jsonl(eval_file(f"core/{name}"))]
        source = f"{name} (llm-foundry's file)"
    return Task(spec.name, items, spec.shots, spec.delimiter, spec.baseline, source=source)


def piqa() -> Task:
    """PIQA's validation split as released (goal, two solutions, a labels file), prompted as the harness does."""
    records = read_jsonl(eval_file("piqa/valid.jsonl"))
    labels = eval_file("piqa/valid-labels.lst").read_text(encoding="utf-8").split()
    if len(labels) != len(records):
        raise InputError(f"PIQA: {len(records)} questions but {len(labels)} labels")
    items = [MultipleChoice(f"Question: {r['goal']}\nAnswer:", (r["sol1"], r["sol2"]), int(label))
             for r, label in zip(records, labels)]
    return Task("piqa", items, baseline=0.5, source="PIQA's validation split (valid.jsonl, valid-labels.lst)")


def lambada() -> Task:
    """OpenAI's LAMBADA test file: each passage's last word, to be predicted greedily from the rest."""
    items = []
    for record in read_jsonl(eval_file("lambada/lambada_test.jsonl")):
        context, word = record["text"].rsplit(" ", 1)
        items.append(Cloze(context, word))
    return Task("lambada", items, source="OpenAI's LAMBADA test file (lambada_test.jsonl)")


MMLU_LETTERS = "ABCD"


def mmlu_item(row: list[str]) -> MultipleChoice:
    question, *options, answer = row
    listed = "\n".join(f"{letter}. {option}" for letter, option in zip(MMLU_LETTERS, options))
    return MultipleChoice(f"{question.strip()}\n{listed}\nAnswer:", tuple(MMLU_LETTERS), MMLU_LETTERS.index(answer))


def read_mmlu(relative: str) -> list[MultipleChoice]:
    with open(eval_file(relative), encoding="utf-8", newline="") as f:
        return [mmlu_item(row) for row in csv.reader(f)]


def mmlu(split: str = "test", shots: int = 5) -> Task:
    """MMLU as released (a CSV per subject and split), five-shot from each subject's dev split under the line that
    names the subject, as Hendrycks et al. and the harness prompt it; the choices are the letters."""
    items, pools, subjects = [], {}, []
    for where in sorted(EVAL_FILES):
        if where.startswith(f"eval/mmlu/{split}/") and where.endswith(f"_{split}.csv"):
            subject = where.rsplit("/", 1)[1].removesuffix(f"_{split}.csv")
            pools[subject] = read_mmlu(f"mmlu/dev/{subject}_dev.csv")
            questions = read_mmlu(where.removeprefix("eval/"))
            items += questions
            subjects += [subject] * len(questions)
    if not items:
        raise InputError(f"MMLU has no {split} split; its splits are dev, val and test")
    return Task("mmlu", items, shots, " ", 0.25, source=f"MMLU's {split} split, {shots} shots from its dev split",
                subjects=subjects, pools=pools)


def gsm8k(shots: int = 5) -> Task:
    """GSM8K's test problems; the shots are train problems with their worked answers."""
    test, train = ([Generative(r["question"], r["answer"]) for r in read_jsonl(eval_file(f"gsm8k/{split}.jsonl"))]
                   for split in ("test", "train"))
    return Task("gsm8k", test, shots, shot_pool=train, source="GSM8K's test split, shots from its train split")


def named_task(name: str) -> Task:
    """Any one task of the mirror by name: one of CORE's, or piqa, lambada, mmlu, gsm8k (as released)."""
    loaders = {"piqa": piqa, "lambada": lambada, "mmlu": mmlu, "gsm8k": gsm8k}
    if name in loaders:
        return loaders[name]()
    specs = {spec.name: spec for spec in core_specs()}
    if name in NOT_MIRRORED:
        raise MissingFile(f"{name} is one of CORE's tasks, but the mirror does not carry it (too large upstream)")
    if name not in specs:
        known = sorted({*loaders, *(n for n in specs if n not in NOT_MIRRORED)})
        raise InputError(f"no task named {name!r}; choose one of {', '.join(known)}")
    return core_task(specs[name])
