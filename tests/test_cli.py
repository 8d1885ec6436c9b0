"""The command lines, run as a user runs them: `python -m tinylm.train ...` in a subprocess, offline."""

import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tinylm.checkpoint import load_model
from tinylm.generate import generate_text

REPO = Path(__file__).resolve().parent.parent


def run_cli(module, *args, data_dir):
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    assert env.get("TINYLM_DATA_MIRROR"), "the root conftest.py should point TINYLM_DATA_MIRROR at the offline mirror"
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def last_record(run_dir):
    return json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    """One smoke-profile training run, shared by the tests below (each copies it before changing it)."""
    root = tmp_path_factory.mktemp("cli")
    out = root / "run"
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, data_dir=data_root)
    assert result.returncode == 0, result.stderr
    return data_root, out, result


def test_train_prints_the_final_validation_loss_that_metrics_record(smoke_run):
    _, out, result = smoke_run
    match = re.search(r"final validation loss \(whole split, [\d,]+ tokens\): (\d+\.\d+)", result.stdout)
    assert match, result.stdout
    record = last_record(out)
    assert record["event"] == "final" and record["step"] == 30  # the smoke recipe's max_steps
    assert float(match.group(1)) == pytest.approx(record["val_loss"], abs=1e-4)
    assert record["val_loss"] < math.log(65)  # better than uniform over the 65 characters
    assert (out / "last.pt").is_file() and (out / "best.pt").is_file()


def test_rerun_into_the_same_folder_needs_resume_or_overwrite(smoke_run):
    data_root, out, _ = smoke_run
    before = (out / "last.pt").read_bytes()
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, data_dir=data_root)
    assert result.returncode != 0
    assert "--resume" in result.stderr and "--overwrite" in result.stderr
    assert (out / "last.pt").read_bytes() == before


def test_resume_continues_the_run(smoke_run):
    data_root, out, _ = smoke_run
    resumed = out.parent / "resumed"
    shutil.copytree(out, resumed)
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", resumed, "--resume",
                     "--max-steps", 40, data_dir=data_root)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    new = records[len((out / "metrics.jsonl").read_text().splitlines()):]
    assert [r["step"] for r in new if r["event"] == "train"] == [35, 40]  # continued from step 30, not from 0
    assert new[-1]["event"] == "final" and new[-1]["step"] == 40 and "val_loss" in new[-1]


def test_sample_cli_prints_what_generate_text_makes_from_the_run(smoke_run):
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, "--prompt", "ROMEO:", "--max-new-tokens", 20, "--temperature", 0,
                     data_dir=data_root)
    assert result.returncode == 0, result.stderr
    model, tokenizer, _ = load_model(out)
    expected = generate_text(model, tokenizer, "ROMEO:", 20, temperature=0)
    assert result.stdout == expected + "\n"
def test_sample_cli_streams_every_sampler_option_and_numbers_the_samples(smoke_run):
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, "--prompt", "ROMEO:", "--max-new-tokens", 40, "--temperature", 0.9,
                     "--top-k", 20, "--top-p", 0.9, "--repetition-penalty", 1.2, "--seed", 4, "--stop", "\\n\\n",
                     "--min-new-tokens", 2, "--num-samples", 2, "--no-cache", data_dir=data_root)
    assert result.returncode == 0, result.stderr
    model, tokenizer, _ = load_model(out)
    expected = [generate_text(model, tokenizer, "ROMEO:", 40, temperature=0.9, top_k=20, top_p=0.9,
                              repetition_penalty=1.2, seed=seed, stop="\n\n", min_new_tokens=2) for seed in (4, 5)]
    assert result.stdout == f"--- sample 1 ---\n{expected[0]}\n--- sample 2 ---\n{expected[1]}\n"


@pytest.mark.parametrize("args, message", [(("--top-p", 1.5), r"top_p must be in \(0, 1\]"),
                                           (("--temperature", -1), "temperature must be >= 0"),
                                           (("--prompt", "ROMEO\u00e9"), "does not know")])
def test_sample_cli_bad_arguments_end_with_one_clear_line(smoke_run, args, message):
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, *args, data_dir=data_root)
    assert result.returncode == 1
    assert re.search(message, result.stderr) and "Traceback" not in result.stderr, result.stderr




def test_sample_cli_without_gpt2_bpe_files_says_how_to_get_them(tmp_path, make_model):
    from tinylm.checkpoint import save_checkpoint
    from tinylm.tokenizers import BPETokenizer

    model = make_model(vocab_size=50304)
    save_checkpoint(tmp_path / "best.pt", {"model_config": model.config.to_dict(), "model": model.state_dict(),
                                           "tokenizer": BPETokenizer("gpt2").to_dict()})
    env = {k: v for k, v in os.environ.items() if k not in ("TINYLM_DATA_MIRROR", "TIKTOKEN_CACHE_DIR")}
    empty_cache = tmp_path / "no-tiktoken-files"
    empty_cache.mkdir()
    # Offline, whatever this machine's network: tiktoken's download goes to a closed port.
    env.update(TIKTOKEN_CACHE_DIR=str(empty_cache), HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "tinylm.sample", "--ckpt", str(tmp_path), "--prompt", "Hi"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "could not load GPT-2's BPE files" in result.stderr and "TINYLM_DATA_MIRROR" in result.stderr


def test_sample_cli_top_k_below_one_is_a_usage_error(smoke_run):
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, "--top-k", 0, data_dir=data_root)
    assert result.returncode == 2 and "leave it out to sample from every token" in result.stderr
