"""The benchmarks the field reports, read from their released files into items a scorer can render.

Four kinds of item, after llm-foundry's formats (which DCLM's CORE uses): a **multiple-choice** question (one query,
several continuations, the right one's index), a **schema** item (several contexts, one continuation: Winograd's
pronoun resolved each way), a **cloze** (a context and the continuation the model must produce greedily: LAMBADA's
last word) and a **generative** problem (GSM8K: a question, and a worked answer ending `#### N`). A `Benchmark` holds
the items with how the field prompts them: shots, the delimiter before each continuation, and the accuracy of
guessing. (CORE calls each of its 22 benchmarks a task, and so do its files; here they are benchmarks too.)

Each file is pinned by its public repository, commit and sha256 (eval_sources.json) and copied from the offline
mirror's `eval/` or downloaded into the data folder: CORE's tasks in llm-foundry's files (`core/`), and PIQA, LAMBADA,
MMLU and GSM8K as their authors released them; HellaSwag comes from its own validation file (tinylm.eval.hellaswag).
CORE's shots and delimiters are DCLM's `heavy.yaml`, its baselines `eval_meta_data.csv`.
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
from ..settings import option
from .hellaswag import locate_val


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
class Benchmark:
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


def read_jsonl(path: Path, limit: int | None = None) -> list[dict[str, Any]]:
    """The first `limit` records (all if None) of a JSON-lines file; the lines after them are not read."""
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if limit is not None and len(records) == limit:
                break
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


def hellaswag_item(record: dict[str, Any]) -> MultipleChoice:
    """An item (context, four endings, the right one's index) from a JSON line of the official file or the substitute.

    Both carry `ctx`, `endings` and `label`; the official file also has `ctx_a`/`ctx_b`, whose
    joining `ctx` already is, so they are used only if `ctx` is missing.
    """
    if "ctx" in record:
        ctx = record["ctx"]
    elif "ctx_a" in record:
        ctx = f"{record['ctx_a']} {record.get('ctx_b', '')}".rstrip()
    else:
        raise InputError(f"a HellaSwag record needs 'ctx' (or 'ctx_a'/'ctx_b'); this one has keys {sorted(record)}")
    endings = record.get("endings")
    if not isinstance(endings, list) or len(endings) != 4 or not all(isinstance(e, str) for e in endings):
        raise InputError(f"a HellaSwag record needs 'endings': a list of 4 strings; got {endings!r}")
    if "label" not in record or str(record["label"]).strip() == "":
        raise InputError("this HellaSwag record has no label (the test split's labels are not public); "
                         "use the validation split")
    label = int(record["label"])
    if not 0 <= label < 4:
        raise InputError(f"a HellaSwag label must be 0, 1, 2 or 3; got {label}")
    return MultipleChoice(str(ctx), tuple(endings), label)


def read_hellaswag(path: str | Path, limit: int | None = None) -> list[MultipleChoice]:
    """The first `limit` items (all if None) of a HellaSwag JSON-lines file."""
    items = []
    for number, record in enumerate(read_jsonl(Path(path), limit), start=1):
        try:
            items.append(hellaswag_item(record))
        except (ValueError, TypeError) as error:
            raise InputError(f"{path}, record {number}: {error}") from None
    return items


# CORE's 22 tasks (DCLM's `low_variance_datasets`) and the file of each; hellaswag is read from HellaSwag's own
# validation file (tinylm.eval.hellaswag.locate_val); squad and coqa are not in the mirror (too large upstream).
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


def core_benchmark(spec: CoreSpec) -> Benchmark:
    """One of CORE's tasks: llm-foundry's file, or for HellaSwag the official validation file (tinylm.eval.hellaswag,
    which says when offline it scores the mirror's substitute)."""
    if spec.name.startswith("hellaswag"):
        val = locate_val()
        items, source = read_hellaswag(val.path), val.description
    else:
        name = CORE_FILES.get(spec.name, f"{spec.name}.jsonl")
        items = [core_item(record) for record in read_jsonl(eval_file(f"core/{name}"))]
        source = f"{name} (llm-foundry's file)"
    return Benchmark(spec.name, items, spec.shots, spec.delimiter, spec.baseline, source=source)


def piqa_records() -> list[dict[str, Any]]:
    """PIQA's validation questions (goal, two solutions) with their labels, which it releases in a separate file."""
    records = read_jsonl(eval_file("piqa/valid.jsonl"))
    labels = eval_file("piqa/valid-labels.lst").read_text(encoding="utf-8").split()
    if len(labels) != len(records):
        raise InputError(f"PIQA: {len(records)} questions but {len(labels)} labels")
    return [record | {"label": int(label)} for record, label in zip(records, labels)]


def piqa() -> Benchmark:
    """PIQA's validation split as released, prompted as the harness does."""
    items = [MultipleChoice(f"Question: {r['goal']}\nAnswer:", (r["sol1"], r["sol2"]), r["label"])
             for r in piqa_records()]
    return Benchmark("piqa", items, baseline=0.5, source="PIQA's validation split (valid.jsonl, valid-labels.lst)")


def lambada() -> Benchmark:
    """OpenAI's LAMBADA test file: each passage's last word, to be predicted greedily from the rest."""
    records = read_jsonl(eval_file("lambada/lambada_test.jsonl"))
    items = [Cloze(*record["text"].rsplit(" ", 1)) for record in records]  # (the passage up to its last word, the word)
    return Benchmark("lambada", items, source="OpenAI's LAMBADA test file (lambada_test.jsonl)")


MMLU_LETTERS = "ABCD"


def mmlu_item(row: list[str]) -> MultipleChoice:
    question, *options, answer = row
    listed = "\n".join(f"{letter}. {option}" for letter, option in zip(MMLU_LETTERS, options))
    return MultipleChoice(f"{question.strip()}\n{listed}\nAnswer:", tuple(MMLU_LETTERS), MMLU_LETTERS.index(answer))


def read_mmlu(relative: str) -> list[MultipleChoice]:
    with open(eval_file(relative), encoding="utf-8", newline="") as f:
        return [mmlu_item(row) for row in csv.reader(f)]


def mmlu(split: str = "test", shots: int = 5) -> Benchmark:
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
    return Benchmark("mmlu", items, shots, " ", 0.25, source=f"MMLU's {split} split, {shots} shots from its dev split",
                subjects=subjects, pools=pools)


def gsm8k(shots: int = 5) -> Benchmark:
    """GSM8K's test problems; the shots are train problems with their worked answers."""
    test, train = ([Generative(r["question"], r["answer"]) for r in read_jsonl(eval_file(f"gsm8k/{split}.jsonl"))]
                   for split in ("test", "train"))
    return Benchmark("gsm8k", test, shots, shot_pool=train, source="GSM8K's test split, shots from its train split")


@dataclass(frozen=True)
class Selection:
    """What an `eval` command scores: a benchmark by name (named_benchmark), the harness's task definitions or
    tinylm's (harness.run_harness), some of CORE's or the harness's tasks, and how many items of each."""

    name: str | None = option("arc_easy, piqa, lambada, mmlu, gsm8k, winogrande, ... (any of the mirror's)",
                              metavar="NAME", positional=True)
    hub: bool = option("the harness's own task definitions and data (online)", default=False)
    tasks: list[str] | None = option("{tasks}", metavar="NAME", nargs="+")
    limit: int | None = option("score only the first N items{each} (default: {all})", metavar="N", minimum=1)
    truncate: bool = option("an item too long for the context even without shots: cut its context from the left "
                            "(default: left out)", default=False)


def named_benchmark(name: str) -> Benchmark:
    """Any one benchmark of the mirror by name: one of CORE's, or piqa, lambada, mmlu, gsm8k (as released)."""
    loaders = {"piqa": piqa, "lambada": lambada, "mmlu": mmlu, "gsm8k": gsm8k}
    if name in loaders:
        return loaders[name]()
    specs = {spec.name: spec for spec in core_specs()}
    if name in NOT_MIRRORED:
        raise MissingFile(f"{name} is one of CORE's tasks, but the mirror does not carry it (too large upstream)")
    if name not in specs:
        known = sorted({*loaders, *(n for n in specs if n not in NOT_MIRRORED)})
        raise InputError(f"no benchmark named {name!r}; choose one of {', '.join(known)}")
    return core_benchmark(specs[name])
