"""`python -m tinylm.sft --task instruct` as a user runs it (a process of its own, tests/preloaded.py; offline, smoke
profile): the run, its report, resume, a Hugging Face GPT-2 base without chat tokens, and one-line errors for bad
input. The story task's runs are tests/test_sft_stories.py's."""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
import torch

from tests.helpers import run_cli
from tests.preloaded import run_python
from tinylm.errors import InputError
from tinylm.model.lora import LoRAOptions
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.posttrain.sft.run import sft
from tinylm.posttrain.vocab import add_chat_tokens
from tinylm.tokenizers.chat_template import chat_token_ids
from tinylm.train.checkpoint import load_model, model_checkpoint, save_checkpoint
from tinylm.train.options import RunOptions

INSTRUCT = ("--task", "instruct", "--profile", "smoke")


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory):
    """One smoke fine-tuning run (its small base pretrained first), shared by the tests here."""
    root = tmp_path_factory.mktemp("sft")
    out = root / "chat"
    result = run_cli("tinylm.sft", *INSTRUCT, "--out", out, data_dir=root / "data")
    assert result.returncode == 0, result.stderr
    return root, out, result


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_smoke_run_reports_before_and_after_and_saves_a_chat_model(chat_run):
    _, out, result = chat_run
    report = json.loads((out / "sft_eval.json").read_text())
    assert report["validation"]["kept"] == report["test"]["kept"] == 8  # the smoke recipe's held_out of each split
    assert 900 < report["train"]["kept"] < 1000  # the rest of the 1,100 records, less the held-out splits
    final = records(out / "metrics.jsonl")[-1]
    assert final["event"] == "final" and final["step"] == 20
    # best.pt is chosen on the validation split; the reported answer loss is best.pt's on the test split
    assert report["after"]["validation_answer_loss"] == pytest.approx(final["best_val_loss"], rel=1e-6)
    best = min((r for r in records(out / "metrics.jsonl") if r["event"] in ("eval", "final")),
               key=lambda r: r["val_loss"])
    assert report["after"]["step"] == best["step"] and report["after"]["checkpoint"] == "best.pt"
    assert report["after"]["answer_loss"] != pytest.approx(report["after"]["validation_answer_loss"], rel=1e-6)
    assert report["after"]["answer_loss"] < report["before"]["answer_loss"]
    assert 0 <= report["after"]["pass_rate"] <= 1 and len(report["after"]["replies"]) == 3
    for measured in (report["baseline"], report["before"], report["after"]):  # three models, measured alike
        assert measured["problems"] == report["after"]["problems"] == len(measured["passed_each"])
        assert set(measured["figures"]) == {"token_f1", "rouge_l"} and measured["answer_loss"] > 0
        assert measured["passed"] == sum(measured["passed_each"]) == round(measured["pass_rate"] * measured["problems"])
    evals = [r for r in records(out / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert all("train_answer_loss" in r for r in evals)
    epochs = [r["chat_epochs"] for r in evals]
    assert epochs == sorted(epochs) and 0 < epochs[-1] < 20 * 8 / report["train"]["kept"] + 1e-9  # <= 20 chat batches
    assert "test replies that end (<|im_end|> within 200 tokens), greedy, on " in result.stdout
    assert "answer loss of the test answers: " in result.stdout and "rouge_l: " in result.stdout
    assert f"best.pt is step {best['step']}, the best validation answer loss" in result.stdout
    assert "python -m tinylm.chat --ckpt" in result.stdout
    model, tokenizer, _ = load_model(out)
    assert chat_token_ids(tokenizer) is not None  # the base had no chat tokens: they were added
    assert model.config.vocab_size >= tokenizer.vocab_size
    assert chat_base(out).parent.name == "chat-base-smoke" and chat_base(out).is_file()


def chat_base(out):
    """The small base the run started from: the instruction task's prerequisite, runs/chat-base-<profile>."""
    from pathlib import Path

    return Path(json.loads((out / "settings.json").read_text())["base"]["path"])


def test_a_run_resumes_and_keeps_its_before_measurement(chat_run, tmp_path):
    root, out, _ = chat_run
    copy = tmp_path / "chat"
    copy_run(out, copy)
    before = json.loads((copy / "sft_eval.json").read_text())["before"]
    result = run_cli("tinylm.sft", *INSTRUCT, "--out", copy, "--resume", "--max-steps", "26",
                     data_dir=root / "data")
    assert result.returncode == 0, result.stderr
    assert records(copy / "metrics.jsonl")[-1]["step"] == 26
    assert json.loads((copy / "sft_eval.json").read_text())["before"] == before
    assert "chat base:" not in result.stdout  # a resumed run makes no base


def test_a_hugging_face_gpt2_base_gets_chat_tokens_and_a_grown_embedding(tmp_path):
    transformers = pytest.importorskip("transformers")
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=128,
                                                              vocab_size=50257, bos_token_id=None, eos_token_id=None))
    hf.save_pretrained(tmp_path / "hf")
    out = tmp_path / "chat"
    result = run_cli("tinylm.sft", *INSTRUCT, "--base", tmp_path / "hf", "--out", out,
                     "--max-steps", "4", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    assert "vocabulary 50,257 -> 50,260 tokens, embedding 50,257 -> 50,304 rows" in result.stdout
    model, tokenizer, _ = load_model(out / "last.pt")
    assert tokenizer.to_dict() == {"kind": "bpe", "encoding": "gpt2-chat"} and model.config.vocab_size == 50304
    assert model.lm_head.weight is model.transformer.wte.weight
    mean = hf.transformer.wte.weight[:50257].mean(0)
    assert torch.allclose(model.transformer.wte.weight[50258], mean, atol=0.05)  # mean-initialised, then 4 steps


@pytest.mark.parametrize("args, message", [
    (["--base", "gpt2"], "needs the network|HF_HUB_OFFLINE is set"),
    (["--data", "{missing}"], "no instruction file"),
    (["--data", "{bad}"], "neither a JSON list nor JSON lines"),
    (["--data", "{empty_answers}"], "leaves no usable conversation"),
    (["--base", "{missing}"], "no run or checkpoint there"),
    (["--set", "pretraining_share=1.5"], "pretraining_share must be at least 0 and below 1"),
    (["--set", "pretraining_share=lots"], "pretraining_share takes a number"),
    (["--set", "held_outs=4"], "no such field. --set changes SFTRecipe's lora_learning_rate, "),
    (["--lora-rank", "0"], "argument --lora-rank: must be an integer >= 1, got 0; 4 to 16 is usual"),
    (["--lora-rank", "33"], "LoRA rank 33 does not fit a 32 -> 96 layer: choose a rank from 1 to 32"),
])
def test_bad_input_ends_with_one_line_and_writes_nothing(tmp_path, args, message):
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x", "output": "y"}\n{oops\n')
    (tmp_path / "empty.json").write_text(json.dumps([{"instruction": "Say nothing.", "output": " "}] * 30))
    paths = {"{missing}": str(tmp_path / "missing"), "{bad}": str(tmp_path / "bad.jsonl"),
             "{empty_answers}": str(tmp_path / "empty.json")}
    args = [paths.get(a, a) for a in args]
    out = tmp_path / "chat"
    result = run_cli("tinylm.sft", *INSTRUCT, "--out", out, *args, data_dir=tmp_path / "data")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr.strip().splitlines()[-1]), result.stderr
    assert not (out / "last.pt").exists()


def test_lora_trains_adapters_and_token_rows_only_and_resumes(chat_run, tmp_path):
    root, out, _ = chat_run
    lora = tmp_path / "lora"
    args = (*INSTRUCT, "--base", chat_base(out), "--out", lora, "--lora-rank", "4",
            "--lora-targets", "attn.c_attn", "mlp.c_fc")
    result = run_cli("tinylm.sft", *args, "--max-steps", "6", data_dir=root / "data")
    assert result.returncode == 0, result.stderr
    report = json.loads((lora / "sft_eval.json").read_text())
    assert report["lora"]["adapters_bytes"] < report["lora"]["checkpoint_bytes"] / 10
    assert (lora / "adapters.pt").stat().st_size == report["lora"]["adapters_bytes"]
    base, _ = add_chat_tokens(*load_model(chat_base(out))[:2])  # the start: the base with chat tokens
    tuned, tokenizer, state = load_model(lora)  # merged on load: a plain GPT
    assert state["lora"]["targets"] == ["attn.c_attn", "mlp.c_fc"]
    new_rows = sorted(chat_token_ids(tokenizer).values())
    assert state["lora"]["token_ids"] == new_rows
    tuned_weights, base_weights = tuned.state_dict(), base.state_dict()
    for name, weight in tuned_weights.items():
        moved = not torch.equal(weight, base_weights[name])
        if name.endswith(("attn.c_attn.weight", "mlp.c_fc.weight")):
            assert moved, name  # merged adapters
        elif name in ("transformer.wte.weight", "lm_head.weight"):
            changed_rows = (weight != base_weights[name]).any(dim=1).nonzero().flatten().tolist()
            assert changed_rows == new_rows  # the chat tokens' rows, nothing else
        else:
            assert not moved, name  # frozen: biases, norms, the other projections
    resumed = run_cli("tinylm.sft", *args, "--resume", "--max-steps", "8", data_dir=root / "data")
    assert resumed.returncode == 0, resumed.stderr
    assert records(lora / "metrics.jsonl")[-1]["step"] == 8
    assert load_model(lora / "last.pt")[2]["lora"] == state["lora"]


def copy_run(out, folder):
    folder.mkdir()
    for name in ("last.pt", "best.pt", "metrics.jsonl", "sft_eval.json", "settings.json"):
        (folder / name).write_bytes((out / name).read_bytes())
    return {name: (folder / name).read_bytes() for name in ("last.pt", "best.pt", "sft_eval.json", "settings.json")}


def quiet(_):
    pass


def test_resume_refuses_a_changed_share_or_batch_and_applies_a_new_learning_rate(chat_run, tmp_path, monkeypatch):
    """The one resume rule: a fixed option given with another value than the saved run's is one error naming both;
    the step limit and the learning rate may change; the options not given keep the saved run's."""
    root, out, _ = chat_run
    copy = tmp_path / "chat"
    kept = copy_run(out, copy)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root / "data"))
    settings = json.loads((copy / "settings.json").read_text())
    assert settings["command"] == "sft" and settings["recipe"]["pretraining_share"] == 0.2
    for run, options, message in (
            (RunOptions(out=copy, resume=True, set={"pretraining_share": "0.5"}), PostTrainingOptions(),
             r"^--set pretraining_share=0\.5: the run in .* was started with --set pretraining_share=0\.2; resume "),
            (RunOptions(out=copy, resume=True, batch_size=4), PostTrainingOptions(),
             "^--batch-size 4: .* with --batch-size 8"),
            (RunOptions(out=copy, resume=True), PostTrainingOptions(lora=LoRAOptions(4)),
             "^--lora-\\* rank 4, .* no --lora")):
        with pytest.raises(InputError, match=message):
            sft(run, options, say=quiet, on_record=quiet)
        assert {name: (copy / name).read_bytes() for name in kept} == kept
    sft(RunOptions(out=copy, resume=True, max_steps=22, learning_rate=2e-3), PostTrainingOptions(data="instruct"),
        say=quiet, on_record=quiet)
    saved = load_model(copy / "last.pt")[2]
    assert saved["step"] == 22 and saved["train_config"]["learning_rate"] == 2e-3
    assert json.loads((copy / "settings.json").read_text())["options"] == settings["options"]


def test_overwrite_with_a_start_that_fails_keeps_the_old_run(chat_run, tmp_path):
    root, out, _ = chat_run
    kept = copy_run(out, tmp_path / "chat")
    (tmp_path / "bad.jsonl").write_text('{"instruction": "x", "output": "y"}\n{oops\n')
    result = run_cli("tinylm.sft", *INSTRUCT, "--out", tmp_path / "chat", "--overwrite",
                     "--data", tmp_path / "bad.jsonl", data_dir=root / "data")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert {name: (tmp_path / "chat" / name).read_bytes() for name in kept} == kept


def test_resuming_a_checkpoint_without_a_training_state_is_one_line(chat_run, tmp_path):
    root, out, _ = chat_run
    copy_run(out, tmp_path / "chat")
    model, tokenizer, _ = load_model(out / "last.pt")
    save_checkpoint(tmp_path / "chat" / "last.pt", model_checkpoint(model, tokenizer))  # weights only, as imported
    result = run_cli("tinylm.sft", *INSTRUCT, "--out", tmp_path / "chat", "--resume",
                     data_dir=root / "data")
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "holds a model but not a training run's state" in result.stderr.strip().splitlines()[-1]


def test_two_processes_fine_tune_and_score_the_held_out_answers_as_one_does(chat_run, tmp_path):
    """torchrun with gloo: the held-out answer loss, summed over the ranks' shares, equals the one-process value."""
    root, out, _ = chat_run
    ddp_out = tmp_path / "ddp"
    env = {**os.environ, "TINYLM_DATA_DIR": str(root / "data"), "OMP_NUM_THREADS": "1"}
    result = run_python([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", "tinylm.sft", *INSTRUCT, "--base", str(chat_base(out)),
                         "--out", str(ddp_out), "--max-steps", "4"], env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one = json.loads((out / "sft_eval.json").read_text())["before"]["answer_loss"]
    two = json.loads((ddp_out / "sft_eval.json").read_text())["before"]["answer_loss"]
    assert two == pytest.approx(one, rel=1e-5)
    assert "of 8 x 2" in result.stdout and records(ddp_out / "metrics.jsonl")[-1]["step"] == 4


def test_a_time_budget_says_what_it_does_not_bound(tmp_path):
    """--max-seconds bounds the fine-tuning steps; the base is named before anything, and the plan line names the
    measurements on top."""
    result = run_cli("tinylm.sft", *INSTRUCT, "--out", tmp_path / "chat", "--max-seconds", "30",
                     data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert next(line for line in lines if line.startswith(("note", "chat base:"))).startswith("chat base: ")
    plan = next(line for line in lines if line.startswith("plan: --max-seconds 30"))
    assert "measurements before and after" in plan


def test_lora_adapters_start_from_the_runs_seed_whatever_ran_before(tmp_path, monkeypatch):
    """A's random start is drawn after seeding with the run's seed, so that a LoRA run repeats in a notebook whose
    earlier cells drew random numbers, and another --seed gives another start."""
    monkeypatch.setenv("TINYLM_RUNS_DIR", str(tmp_path / "runs"))

    def adapters(name, seed=None):
        torch.manual_seed(len(name))  # what came before differs
        torch.rand(len(name))
        sft(RunOptions(profile="smoke", out=tmp_path / name, max_steps=2, seed=seed),
            PostTrainingOptions(task="stories", lora=LoRAOptions(rank=2)), say=quiet, on_record=quiet)
        return torch.load(tmp_path / name / "adapters.pt", weights_only=True)["tensors"]

    first, again, other = adapters("a"), adapters("bb"), adapters("ccc", seed=7)
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
