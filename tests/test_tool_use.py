"""Reasoning with a tool through the commands: SFT of the published chat model on the multistep task, GRPO from that
run, chat on the result with the calculator; and the calculator's text kept apart on the terminal and the page."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import torch

from tests.helpers import REPO
from tinylm.generate.calculator import Calculator, ToolText
from tinylm.posttrain.grpo.rollout import sample_groups
from tinylm.posttrain.task import Score


def run(module: str, *args, tmp_path, stdin: str = ""):
    """`python -m module args` in a new process, its data and runs under tmp_path, `stdin` its input."""
    env = {**os.environ, "TINYLM_DATA_DIR": str(tmp_path / "data"), "TINYLM_RUNS_DIR": str(tmp_path / "runs"),
           "OMP_NUM_THREADS": "1", "TINYLM_PROFILE": "smoke"}
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env, input=stdin,
                          capture_output=True, text=True, timeout=600)


def test_lora_sft_then_grpo_on_bigger_numbers_then_chat_with_the_calculator(tmp_path):
    sft_out = tmp_path / "runs" / "sft-multistep-smoke"  # where GRPO's recipe looks for its start
    done = run("tinylm.sft", "--task", "multistep", "--base", "smollm2-135m-instruct", "--lora-rank", "4", "--out",
               sft_out, tmp_path=tmp_path)  # LoRA: its checkpoints hold no AdamW moments of the whole model
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported smollm2-135m-instruct" in done.stdout
    settings = json.loads((sft_out / "settings.json").read_text())
    assert settings["base"]["path"].endswith("smollm2-135m-instruct/last.pt")
    report = json.loads((sft_out / "sft_eval.json").read_text())
    assert {"calls", "refused_calls"} <= set(report["after"]["figures"])
    assert "--calculator" in done.stdout  # the epilogue's next command

    grpo_out = tmp_path / "grpo"
    done = run("tinylm.grpo", "--task", "multistep_3_digit", "--max-steps", "1", "--out", grpo_out,
               tmp_path=tmp_path)  # from multistep's SFT run
    assert done.returncode == 0, done.stderr[-2000:]
    settings = json.loads((grpo_out / "settings.json").read_text())
    assert settings["base"]["path"] == str((sft_out / "best.pt").resolve())
    records = [json.loads(line) for line in (grpo_out / "metrics.jsonl").read_text().splitlines()]
    assert any(r["event"] == "train" for r in records)

    done = run("tinylm.chat", "--ckpt", grpo_out, "--calculator", "--temperature", "0", "--max-new-tokens", "24",
               tmp_path=tmp_path, stdin="Tom has 3 boxes with 12 apples each. How many apples?\n/exit\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "bot> " in done.stdout


def test_chat_refuses_the_calculator_for_a_tokenizer_that_cannot_write_its_results(tmp_path):
    from tests.chat_fixtures import save_tiny_chat_checkpoint

    checkpoint = save_tiny_chat_checkpoint(tmp_path / "chat.pt")
    done = run("tinylm.chat", "--ckpt", checkpoint, "--calculator", tmp_path=tmp_path, stdin="/exit\n")
    assert done.returncode == 1 and "cannot write the calculator's results" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_page_gets_the_calculators_text_apart():
    """The server's events carry a calculator's text as `"tool": true`; joined, they are the reply."""
    import anyio

    from tinylm.serve.server import events

    reply = ["So 12*3 = <<12", "*3=3", "6>>36 apples."]

    async def collect():
        return [json.loads(e.removeprefix("data: ")) async for e in events(iter(reply), 0, ToolText())]

    sent = [event for event in anyio.run(collect) if "text" in event]
    assert "".join(e["text"] for e in sent) == "".join(reply)
    assert "".join(e["text"] for e in sent if e.get("tool")) == "36>>"


class CountingTask:
    """A task whose prompts open a call the model answers with '=' (tests/test_calculator.py's scripted vocabulary):
    the calculator writes the rest."""

    reply_tokens = 8

    def __init__(self, prompt, tokenizer):
        self.prompt, self.tokenizer = prompt, tokenizer

    def prompt_ids(self, tokenizer, problem):
        return self.prompt

    def generation(self, tokenizer):
        return {"tool": Calculator(tokenizer)}

    def score_completions(self, tokenizer, problems, completions):
        return [Score(reward=1.0, correct=True, well_formed=True) for _ in completions]


def test_a_rollout_trains_no_token_the_calculator_wrote(make_model):
    from tests.test_calculator import scripted

    model = make_model(seed=3, block_size=64).eval()
    prompt, tokenizer, _ = scripted(model)
    rollout = sample_groups(model, tokenizer, CountingTask(prompt, tokenizer), [0], 2, temperature=0)
    row = rollout.sequences[0].tolist()
    written = Calculator(tokenizer).written_by_tool(row)
    assert tokenizer.decode([t for t, w in zip(row, written) if w]) == "36>>"
    predicted = rollout.completion_mask[0].tolist()  # position t predicts row[t + 1]
    assert [t for t in range(len(predicted)) if predicted[t]] == \
        [t for t in range(len(prompt) - 1, len(row) - 1) if not written[t + 1]]
    assert torch.equal(rollout.sequences[0], rollout.sequences[1])  # greedy: the group's two rows agree


def test_gsm8k_splits_are_apart_and_their_solutions_compute():
    """Training problems, the validation ones (the train split's last) and the test split share no question; the
    solutions' calls compute with the calculator (but GSM8K's two floor divisions, 560//10 and 180//3), and each final
    number is the answer GSM8K's rule reads."""
    from tinylm.eval.scoring import extract_answer
    from tinylm.generate.calculator import ERROR
    from tinylm.posttrain.tasks.gsm8k import GSM8K, VALIDATION

    task = GSM8K("smoke")
    held = task.held_out(None, 50)
    train = task.train_problems()
    assert len(held.validation) == VALIDATION and len(held.test) == 50
    assert not {p.prompt for p in train} & {p.prompt for p in held.problems}
    refused = [call for p in train + held.problems for call in re.findall(rf"<<([^=]*)={ERROR}>>", p.solution)]
    assert refused and all("//" in call for call in refused)
    assert all(extract_answer(p.solution) == p.answer for p in train + held.problems)
