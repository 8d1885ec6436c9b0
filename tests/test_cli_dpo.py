"""`python -m tinylm.dpo` on a tiny chat model (the smoke profile, offline): the run as a user starts it, its report
and checkpoints, resume, two processes under torchrun equal to one, and one-line errors for bad input.

The base is tests/chat_fixtures.py's tiny chat checkpoint, saved as a run folder the way sft writes one: a real
smoke SFT run would add half a minute to CI and test nothing DPO does differently."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

import pytest
import torch

from tests.chat_fixtures import save_tiny_chat_checkpoint
from tests.helpers import REPO, run_cli
from tests.preloaded import run_python
from tinylm.cli.post_training import cli
from tinylm.errors import InputError
from tinylm.model.lora import LoRAOptions, read_adapters
from tinylm.posttrain.dpo.run import dpo
from tinylm.posttrain.job import PostTrainingOptions
from tinylm.tokenizers.chat_template import chat_token_ids
from tinylm.tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from tinylm.train.checkpoint import load_checkpoint, load_model
from tinylm.train.options import RunOptions

STEPS = ["--max-steps", "4"]


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    """One smoke DPO run of 4 steps of 8 pairs on the tiny chat model, shared by the tests here."""
    root = tmp_path_factory.mktemp("dpo")
    save_tiny_chat_checkpoint(root / "chat" / "best.pt", block_size=256)
    out = root / "dpo"
    result = run_cli("tinylm.dpo", "--task", "preference", "--profile", "smoke", "--base", root / "chat", "--out", out,
                     "--batch-size", "8", *STEPS, data_dir=root / "data")
    assert result.returncode == 0, result.stderr
    return root, out, result


def records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_smoke_run_measures_before_and_after_and_saves_a_chat_model(dpo_run):
    _, out, result = dpo_run
    report = json.loads((out / "dpo_eval.json").read_text())
    kept = {part: report["pairs"][part]["kept"] for part in ("train", "validation", "test")}
    assert sum(kept.values()) + 6 == 1100  # 6 records have chosen = rejected
    before, after = report["preference"]["before"]["test"], report["preference"]["after"]["test"]
    assert before["accuracy"] == 0.5 and before["ties"] == before["pairs"] == kept["test"]  # reported on test
    final = records(out / "metrics.jsonl")[-1]
    assert final["event"] == "final" and final["step"] == 4
    # best.pt is chosen on the validation pairs (the eval records), and reported on the test pairs
    assert report["after"]["validation_dpo_loss"] == pytest.approx(final["best_val_loss"], rel=1e-6)
    evals = [r for r in records(out / "metrics.jsonl") if r["event"] in ("eval", "final")]
    assert report["after"]["step"] == min(evals, key=lambda r: r["val_loss"])["step"]
    assert after["accuracy_low"] <= after["accuracy"] <= after["accuracy_high"] and after["pairs"] == kept["test"]
    for measured in (report["before"], report["after"]):  # greedy replies closer to the chosen answer
        assert measured["problems"] == 8 and 0 <= measured["pass_rate"] <= 1 and len(measured["replies"]) == 3
        assert set(measured["figures"]) == {"f1_chosen", "f1_rejected", "tie"}
    assert "test preference accuracy" in result.stdout and "python -m tinylm.chat --ckpt" in result.stdout
    model, tokenizer, state = load_model(out)
    assert chat_token_ids(tokenizer) is not None and state["dpo"]["beta"] == 0.1
    references = {name: len(state["dpo"][name]) for name in ("reference", "val_reference", "test_reference")}
    assert references == {"reference": kept["train"], "val_reference": kept["validation"],
                          "test_reference": kept["test"]}


def quiet(_):
    pass


def test_a_run_resumes_with_its_saved_reference_and_keeps_its_before_measurement(dpo_run, tmp_path, monkeypatch):
    root, out, _ = dpo_run
    copy = tmp_path / "dpo"
    shutil.copytree(out, copy)
    before = json.loads((copy / "dpo_eval.json").read_text())["before"]
    settings = json.loads((copy / "settings.json").read_text())
    assert settings["options"]["base"] == str(root / "chat") and settings["recipe"]["beta"] == 0.1
    settings["base"]["path"] = str(tmp_path / "nowhere")  # as if the base had moved since
    (copy / "settings.json").write_text(json.dumps(settings))
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root / "data"))  # the preference file is there already
    report = dpo(RunOptions(profile="smoke", out=copy, resume=True, max_steps=6, batch_size=8), say=quiet,
                 on_record=quiet)
    assert report["before"] == before and report["steps"] == 6  # the base is not needed: the reference is saved
    assert records(copy / "metrics.jsonl")[-1]["step"] == 6


def test_resume_refuses_a_changed_beta_and_applies_a_new_learning_rate(dpo_run, tmp_path, monkeypatch):
    """The one resume rule: a fixed option given with another value is one error naming both values (from
    settings.json); a step limit and a learning rate may change."""
    root, out, _ = dpo_run
    copy = tmp_path / "dpo"
    shutil.copytree(out, copy)
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root / "data"))
    kept = (copy / "last.pt").read_bytes()
    with pytest.raises(InputError, match=r"^--set beta=0\.5: the run in .* was started with --set beta=0\.1; "
                                         "resume it without --set beta"):
        dpo(RunOptions(profile="smoke", out=copy, resume=True, set={"beta": 0.5}), say=quiet, on_record=quiet)
    assert (copy / "last.pt").read_bytes() == kept
    dpo(RunOptions(profile="smoke", out=copy, resume=True, max_steps=6, learning_rate=5e-4, set={"beta": "0.1"}),
        say=quiet, on_record=quiet)
    saved = load_checkpoint(copy / "last.pt")
    assert saved["step"] == 6 and saved["train_config"]["learning_rate"] == 5e-4 and saved["dpo"]["beta"] == 0.1
    assert json.loads((copy / "settings.json").read_text())["train"]["max_steps"] == 6


def test_two_processes_train_as_one_does_on_the_combined_batch(dpo_run, tmp_path):
    """torchrun with gloo, 2 ranks of 4 pairs: the same weights and held-out loss as one process with 8."""
    root, out, _ = dpo_run
    env = {**os.environ, "TINYLM_DATA_DIR": str(root / "data"), "OMP_NUM_THREADS": "1"}
    result = run_python([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                         "-m", "tinylm.dpo", "--task", "preference", "--profile", "smoke", "--base", str(root / "chat"),
                         "--out", str(tmp_path / "ddp"), "--batch-size", "4", *STEPS],
                        cwd=REPO, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = records(out / "metrics.jsonl")[-1], records(tmp_path / "ddp" / "metrics.jsonl")[-1]
    assert two["val_loss"] == pytest.approx(one["val_loss"], rel=1e-5)
    assert two["preference_margin"] == pytest.approx(one["preference_margin"], rel=1e-4, abs=1e-6)
    a, b = load_checkpoint(out / "last.pt")["model"], load_checkpoint(tmp_path / "ddp" / "last.pt")["model"]
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0, msg=name)
    assert "of 4 x 1 x 2 pairs" in result.stdout


def not_a_chat_model(folder):
    plain = TrimmedBPETokenizer.from_ids(BPETokenizer("gpt2").encode("Hello world, a plain model."), "gpt2")
    return save_tiny_chat_checkpoint(folder / "plain.pt", tokenizer=plain)


@pytest.mark.parametrize("case, message", [
    ("no rejected", r"record 2 \('Name a color.'\) has no text for 'rejected'"),
    ("plain base", "has no chat tokens: start from a chat model, a run of python -m tinylm.sft"),
    ("missing base", "no run or checkpoint there"),
    ("missing data", "no preference file at"),
    ("lora rank too large", "rank 64"),
])
def test_bad_input_ends_with_one_line_and_loses_nothing(dpo_run, tmp_path, monkeypatch, case, message):
    root, out, _ = dpo_run
    shutil.copytree(out, tmp_path / "dpo")
    kept = {name: (tmp_path / "dpo" / name).read_bytes() for name in ("best.pt", "last.pt", "dpo_eval.json")}
    good = {"instruction": "Name a color.", "input": "", "chosen": "Red, thank you.", "rejected": "Red."}
    (tmp_path / "prefs.json").write_text(json.dumps([good, {k: v for k, v in good.items() if k != "rejected"}]))
    args = {"no rejected": ["--base", root / "chat", "--data", tmp_path / "prefs.json"],
            "plain base": ["--base", not_a_chat_model(tmp_path)],
            "missing base": ["--base", tmp_path / "missing"],
            "missing data": ["--base", root / "chat", "--data", tmp_path / "missing.json"],
            "lora rank too large": ["--base", root / "chat", "--lora-rank", "64"]}[case]
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root / "data"))
    with pytest.raises(SystemExit) as stopped:
        cli("dpo", ["--task", "preference", "--profile", "smoke", "--out", str(tmp_path / "dpo"), "--overwrite",
             *map(str, args)])
    assert isinstance(stopped.value.code, str) and "\n" not in stopped.value.code, stopped.value.code
    assert re.search(message, stopped.value.code), stopped.value.code
    assert {name: (tmp_path / "dpo" / name).read_bytes() for name in kept} == kept


@pytest.mark.parametrize("args, message", [
    (["--set", "beta"], "argument --set: takes FIELD=VALUE, got 'beta'"),
    (["--lora-rank", "0"], "argument --lora-rank: must be an integer >= 1, got 0; 4 to 16 is usual")])
def test_usage_errors(capsys, args, message):
    with pytest.raises(SystemExit) as stopped:
        cli("dpo", args)
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_lora_composes_with_dpo(dpo_run, tmp_path, monkeypatch):
    """Adapters on the attention layers: the wrapped model starts as the reference (every margin 0), only the
    adapters train, best.pt loads merged like any checkpoint, and OUT/adapters.pt holds the adapters alone."""
    root, _, _ = dpo_run
    monkeypatch.setenv("TINYLM_DATA_DIR", str(root / "data"))
    out = tmp_path / "dpo-lora"
    report = dpo(RunOptions(profile="smoke", out=out, max_steps=3, batch_size=8),
                 PostTrainingOptions(task="preference", base=root / "chat", lora=LoRAOptions(4)), say=quiet,
                 on_record=quiet)
    before = report["preference"]["before"]["test"]
    assert before["ties"] == before["pairs"]
    assert report["lora"]["trainable"] < report["lora"]["parameters"] / 5
    assert report["lora"]["adapters_bytes"] < report["lora"]["checkpoint_bytes"] / 5
    base, _, _ = load_model(root / "chat")
    tuned, _, state = load_model(out)
    assert state["lora"]["rank"] == 4 and set(read_adapters(out / "adapters.pt")["tensors"])
    assert torch.equal(tuned.transformer.wte.weight, base.transformer.wte.weight)  # frozen
    assert not torch.equal(tuned.transformer.h[0].attn.c_attn.weight, base.transformer.h[0].attn.c_attn.weight)
