"""EleutherAI's lm-evaluation-harness (the `harness` extra) scoring a tinylm model, with the harness's own tasks.

`TinylmLM` is a model class for the harness: its three requests answered by tinylm's GPT — a continuation's
log-likelihood (and whether greedy decoding gives it), a whole text's in windows of the model's context, and greedy
generation until a stop string. Each row starts with the tokenizer's end-of-text token, as tinylm's scorer's rows do,
and is scored by the full log-softmax, not by tinylm.eval.scoring's batched path, so that the two check each other. A
row longer than the context loses tokens from the left, as with the harness's Hugging Face models; a continuation
longer than the context itself is scored in windows from the row's end, so that a token's score depends on the row
alone, not on where the question ends (what the server's API, which sees only the row, can follow).

`run_harness` runs the harness's task definitions by name (they fetch their data from the Hugging Face hub), or,
offline, local task files over the mirror: `write_local_tasks` writes each one's YAML beside its data into the data
folder (`eval/harness/`), the harness's prompts and metrics on the mirror's copies of arc_easy, arc_challenge, piqa
and lambada_openai. `lm_eval run --include_path` reads the same folder, and its `local-completions` model, pointed at
`python -m tinylm.serve`, gives the same figures item by item (tinylm.serve.openai_api reads a prompt as a row here).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError, MissingFile
from ..paths import atomic_write, data_dir
from ..runtime import model_device
from .benchmarks import eval_file, piqa_records
from .loss import target_losses
from .scoring import encode_pair, start_ids

try:
    from lm_eval.api.model import LM
except ImportError:  # the extra is not installed: run_harness says how to install it
    LM = object

INSTALL = "pip install 'tinylm[harness]' (lm-evaluation-harness)"


class TinylmLM(LM):
    """A tinylm GPT and its tokenizer, as the harness calls a model."""

    def __init__(self, model, tokenizer, batch_rows: int = 8):
        super().__init__()
        self.model, self.tokenizer, self.batch_rows = model.eval(), tokenizer, batch_rows
        self.start = start_ids(tokenizer)
        self.block_size = model.config.block_size

    @property
    def tokenizer_name(self) -> str:  # the harness keys its request cache by it
        return self.tokenizer.to_dict()["kind"]

    @torch.no_grad()
    def token_scores(self, rows: list[tuple[list[int], list[int]]]) -> list[tuple[float, bool]]:
        """Per (context, continuation) of token ids: the continuation's summed log-probability, and whether each of
        its tokens is the argmax. The row is scored in windows from its end, each target seeing as much of the row
        before its window's end as the context holds (one window, the row's last block_size + 1 tokens, unless the
        continuation is longer than the context). Each token costs what `target_losses` says (a trimmed
        vocabulary's <unk> its `unk_penalty` more, per GPT-2 token)."""
        pieces = []  # (row, input ids, the targets that its last positions predict)
        for r, (context, continuation) in enumerate(rows):
            row, first = context + continuation, max(len(context), 1)
            for end in range(len(row), first, -self.block_size):
                begin = max(first, end - self.block_size)
                pieces.append((r, row[max(0, end - 1 - self.block_size): end - 1], row[begin:end]))
        totals, greedy = [0.0] * len(rows), [True] * len(rows)
        for first in range(0, len(pieces), self.batch_rows):
            batch = pieces[first: first + self.batch_rows]
            tokens = torch.zeros((len(batch), max(len(inputs) for _, inputs, _ in batch)), dtype=torch.long)
            for b, (_, inputs, _) in enumerate(batch):
                tokens[b, : len(inputs)] = torch.tensor(inputs)
            logits = self.model(tokens.to(model_device(self.model)))[0][..., : self.tokenizer.vocab_size].cpu()
            for b, (r, inputs, targets) in enumerate(batch):
                targets = torch.tensor(targets)
                picked = logits[b, len(inputs) - len(targets): len(inputs)]  # (n, vocab): position t predicts t + 1
                totals[r] -= target_losses(picked, targets, self.tokenizer).sum().item()
                greedy[r] &= bool((picked.argmax(-1) == targets).all())
        return list(zip(totals, greedy))

    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        """Each (context, continuation) split as the harness splits it (tinylm.eval.scoring.encode_pair), after the
        end-of-text token, and scored."""
        pairs = [encode_pair(self.tokenizer, *request.args) for request in requests]
        return self.token_scores([(self.start + context, continuation) for context, continuation in pairs])

    def loglikelihood_rolling(self, requests) -> list[float]:
        """Each text's log-likelihood, every token predicted once with as much context as fits (the harness's
        windows), the first after the end-of-text token (or, without one, after the text's first token)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        totals = []
        for request in requests:
            ids = self.tokenizer.encode(request.args[0])
            prefix, ids = (self.start[0], ids) if self.start else (ids[0], ids[1:])
            windows = get_rolling_token_windows(ids, prefix, self.block_size, context_len=1)
            totals.append(sum(score for score, _ in self.token_scores(list(map(make_disjoint_window, windows)))))
        return totals

    def generate_until(self, requests) -> list[str]:
        from ..generate.stream import stream

        replies = []
        for request in requests:
            context, options = request.args
            until = options.get("until") or []
            until = [until] if isinstance(until, str) else list(until)
            room = min(int(options.get("max_gen_toks", 256)), self.block_size // 2)
            prompt = (self.start + self.tokenizer.encode(context))[-(self.block_size - room):]
            temperature = float(options.get("temperature", 0.0)) if options.get("do_sample") else 0.0
            replies.append("".join(stream(self.model, self.tokenizer, prompt, room, stop=until,
                                          temperature=temperature)))
        return replies


# The local tasks: the harness's prompts (its arc_easy, arc_challenge, piqa and lambada_openai YAML) over the mirror's
# files. llm-foundry's ARC files hold each question as "Question: ...", choices and the right one's index.
ARC = {"output_type": "multiple_choice", "doc_to_text": "{{query}}\nAnswer:", "doc_to_choice": "{{choices}}",
       "doc_to_target": "{{gold}}", "metrics": ("acc", "acc_norm")}
LOCAL_TASKS: dict[str, dict[str, Any]] = {
    "arc_easy": {"file": "core/arc_easy.jsonl", **ARC},
    "arc_challenge": {"file": "core/arc_challenge.jsonl", **ARC},
    "piqa": {"file": "piqa/valid.jsonl", "output_type": "multiple_choice", "doc_to_text": "Question: {{goal}}\nAnswer:",
             "doc_to_choice": "{{[sol1, sol2]}}", "doc_to_target": "label", "metrics": ("acc", "acc_norm")},
    "lambada_openai": {"file": "lambada/lambada_test.jsonl", "output_type": "loglikelihood",
                       "doc_to_text": "{{text.split(' ')[:-1]|join(' ')}}",
                       "doc_to_target": "{{' '+text.split(' ')[-1]}}", "metrics": ("perplexity", "acc")},
}
AGGREGATION = {"acc": "mean", "acc_norm": "mean", "perplexity": "perplexity"}


def local_data(name: str) -> Path:
    """The task's records as one JSON-lines file the harness reads: the mirror's file, or for PIQA its questions
    with their labels merged in (piqa_records)."""
    if name != "piqa":
        return eval_file(LOCAL_TASKS[name]["file"])
    merged = data_dir() / "eval" / "harness" / "piqa_validation.jsonl"
    merged.parent.mkdir(parents=True, exist_ok=True)
    write_text(merged, "".join(json.dumps(record) + "\n" for record in piqa_records()))
    return merged


def write_text(path: Path, text: str) -> None:
    with atomic_write(path) as f:  # a reader sees the old file or the whole new one
        f.write(text.encode("utf-8"))


def write_local_tasks(names: list[str]) -> Path:
    """Each named task's YAML, beside its data, in the data folder's eval/harness/; the folder."""
    import yaml

    unknown = [name for name in names if name not in LOCAL_TASKS]
    if unknown:
        raise InputError(f"no local task file for {', '.join(unknown)}; offline, choose from {', '.join(LOCAL_TASKS)}"
                         " (online, add --hub for any of the harness's tasks)")
    folder = data_dir() / "eval" / "harness"
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        spec = LOCAL_TASKS[name]
        data = {"data_files": {"test": str(local_data(name))}}
        config = {"task": name, "dataset_path": "json", "dataset_kwargs": data,
                  "output_type": spec["output_type"], "test_split": "test", "doc_to_text": spec["doc_to_text"],
                  "doc_to_target": spec["doc_to_target"],
                  "metric_list": [{"metric": metric, "aggregation": AGGREGATION[metric],
                                   "higher_is_better": metric != "perplexity"} for metric in spec["metrics"]],
                  "metadata": {"version": 1.0, "source": f"the mirror's eval/{spec['file']}, tinylm's local task"}}
        if "doc_to_choice" in spec:
            config["doc_to_choice"] = spec["doc_to_choice"]
        write_text(folder / f"{name}.yaml", yaml.safe_dump(config, sort_keys=False))
    return folder


def run_harness(model, tokenizer, tasks: list[str], *, limit: int | None = None, hub: bool = False) -> dict[str, Any]:
    """lm-evaluation-harness's `simple_evaluate` on the model: the harness's own task definitions (`hub`), or the
    local task files over the mirror. Its results, per-item samples included."""
    try:
        from lm_eval import simple_evaluate
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise MissingFile(f"lm-evaluation-harness is not installed: {INSTALL}") from None
    import datasets

    datasets.disable_progress_bars()  # the harness's own bar per task says how far it is
    manager = TaskManager() if hub else TaskManager(include_path=str(write_local_tasks(tasks)), include_defaults=False)
    return simple_evaluate(TinylmLM(model, tokenizer), tasks=tasks, limit=limit, task_manager=manager,
                           bootstrap_iters=1000, log_samples=True, verbosity="WARNING")
