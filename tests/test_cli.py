"""The command lines, run as a user runs them: `python -m tinylm.train ...` in a process of its own (forked from one
that has imported torch: tests/preloaded.py; a fresh interpreter where a test sends signals or reads a stream),
offline."""

import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.helpers import REPO, run_cli
from tests.preloaded import run_module
from tests.test_docs import problems_of
from tinylm.generate.stream import generate_text
from tinylm.runtime import dtype_warning
from tinylm.train.checkpoint import find_checkpoint, load_checkpoint, load_model


def train_until_ctrl_c(out, *args, data_dir, after="step "):
    """`python -m tinylm.train shakespeare-char --profile smoke` with no end in sight, sent SIGINT (as Ctrl-C sends)
    once it prints a line starting with `after`; returns (exit status, stdout, stderr)."""
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tinylm.train", "shakespeare-char", "--profile", "smoke", "--max-steps", "1000000",
               "--out", str(out), *map(str, args)]
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith(after):
            process.send_signal(signal.SIGINT)
            break
    stdout, stderr = process.communicate(timeout=120)
    return process.returncode, "".join(seen) + stdout, stderr


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


def test_train_shows_the_total_and_an_eta_and_ends_with_where_the_run_is_and_what_to_run_next(smoke_run):
    _, out, result = smoke_run
    stdout = result.stdout
    assert "plan: 30 steps" in stdout and "expected: about " in stdout
    progress = re.findall(r"^step +(\d+)/30 \|.*\| ETA (\S+)$", stdout, flags=re.MULTILINE)
    assert [int(step) for step, _ in progress] == [5, 10, 15, 20, 25, 30]
    assert progress[-1][1] == "0.0s"
    epilogue = stdout[stdout.index("final validation loss"):]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert f"run folder: {out}" in epilogue
    assert f"best validation loss: {records[-1]['best_val_loss']:.4f}" in epilogue
    assert "a sample from the final weights" in epilogue
    assert (f"python -m tinylm.sample --ckpt {out}" in epilogue
            and f"python -m tinylm.eval loss --ckpt {out}" in epilogue)
    assert "notebooks/03b_train_char_gpt.ipynb" in epilogue
    for line in epilogue.split("next:", 1)[1].splitlines():  # each command it suggests works pasted
        if "python -m tinylm." in line:
            assert not problems_of(line.split("   #")[0].strip()), line
    plot = next(line for line in epilogue.splitlines() if "plot_losses" in line).split("   #")[0].strip()
    completed = subprocess.run(plot, shell=True, cwd=REPO, env={**os.environ, "MPLBACKEND": "Agg"}, capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert (out / "loss.png").stat().st_size > 0, "the printed plotting command draws the run's curves"


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


@pytest.mark.parametrize("budget, advice", [
    ([], r"finished, at step 30 of 30; to train it further, raise its step limit: --resume --max-steps M with "
         r"M > 30$"),
    (["--max-steps", "40", "--max-seconds", "0.001"],
     r"finished, at step 30 of 40, its 0.001 s of training used; to train it further, raise its budget: --resume "
     r"--max-seconds S with S > 0.001$")])
def test_resuming_a_finished_run_is_an_error_that_says_how_to_extend_it(smoke_run, budget, advice):
    """A finished run resumed with another learning rate ended with status 0 having trained nothing. It is now a
    one-line error that changes nothing; the extension it names trains on from where the run stopped."""
    data_root, out, _ = smoke_run
    finished = out.parent / f"finished{len(budget)}"
    shutil.copytree(out, finished)
    before = {path.name: path.read_bytes() for path in finished.iterdir()}
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", finished, "--resume",
                     "--learning-rate", "3e-3", *budget, data_dir=data_root)
    assert result.returncode == 1 and re.fullmatch(rf"error: --resume: the run in \S+ is {advice}\n", result.stderr)
    assert {path.name: path.read_bytes() for path in finished.iterdir()} == before
    extend = ["--max-steps", "40", "--max-seconds", "60"] if budget else ["--max-steps", "35"]
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", finished, "--resume",
                     "--learning-rate", "3e-3", *extend, data_dir=data_root)
    assert result.returncode == 0 and load_checkpoint(finished / "last.pt")["step"] > 30, result.stderr


def test_sample_cli_prints_what_generate_text_makes_from_the_run(smoke_run):
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, "--prompt", "ROMEO:", "--max-new-tokens", 20, "--temperature", 0,
                     data_dir=data_root)
    assert result.returncode == 0, result.stderr
    model, tokenizer, _ = load_model(out)
    expected = generate_text(model, tokenizer, "ROMEO:", 20, temperature=0)
    assert result.stdout == expected + "\n"
def test_sample_cli_says_on_stderr_when_its_dtype_is_slow_here_and_still_prints_only_the_text(smoke_run):
    """float16 on a CPU without oneDNN's float16 kernels runs many times slower than float32: one warning line on
    stderr (where there are such kernels, none), and stdout is the generated text alone either way."""
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, "--prompt", "ROMEO:", "--max-new-tokens", 5, "--temperature", 0,
                     "--dtype", "float16", data_dir=data_root)
    assert result.returncode == 0, result.stderr
    expected = dtype_warning("cpu", torch.float16)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == ([] if expected is None else [expected])
    assert result.stdout.startswith("ROMEO:") and "warning" not in result.stdout


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
    from tinylm.tokenizers.gpt2 import BPETokenizer
    from tinylm.train.checkpoint import save_checkpoint

    model = make_model(vocab_size=50304)
    save_checkpoint(tmp_path / "best.pt", {"model_config": model.config.to_dict(), "model": model.state_dict(),
                                           "tokenizer": BPETokenizer("gpt2").to_dict()})
    env = {k: v for k, v in os.environ.items() if k not in ("TINYLM_DATA_MIRROR", "TIKTOKEN_CACHE_DIR")}
    empty_cache = tmp_path / "no-tiktoken-files"
    empty_cache.mkdir()
    # Offline, whatever this machine's network: tiktoken's download goes to a closed port.
    env.update(TIKTOKEN_CACHE_DIR=str(empty_cache), HTTPS_PROXY="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9")
    result = run_module("tinylm.sample", ["--ckpt", tmp_path, "--prompt", "Hi"], cwd=REPO, env=env, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "could not load GPT-2's BPE files" in result.stderr and "TINYLM_DATA_MIRROR" in result.stderr


def test_sample_cli_top_k_below_one_is_a_usage_error(smoke_run):
    data_root, out, _ = smoke_run
    result = run_cli("tinylm.sample", "--ckpt", out, "--top-k", 0, data_dir=data_root)
    assert result.returncode == 2 and "--top-k: must be an integer >= 1, got 0" in result.stderr


@pytest.fixture(scope="module")
def moe_run(tmp_path_factory, data_root):
    """One smoke-profile run of the llama-moe family, shared by the tests below (each copies it before changing it)."""
    out = tmp_path_factory.mktemp("cli-moe") / "run"
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--arch", "llama-moe", "--out", out,
                     data_dir=data_root)
    assert result.returncode == 0, result.stderr
    return data_root, out, result


def test_train_arch_llama_moe_builds_the_family_and_logs_expert_load(moe_run):
    from tinylm.train.recipes import get_track

    _, out, result = moe_run
    model, _, state = load_model(out)
    preset, _ = get_track("shakespeare-char").recipe("smoke")
    assert model.config == preset.config(65, "llama-moe")
    assert (f"llama-moe (loss_free balancing) | {model.num_parameters():,} parameters "
            f"({model.num_active_parameters():,} active per token)") in result.stdout
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["event"] == "train"]
    assert len(train) == 6 and all(len(r["expert_load"]) == model.config.n_layer for r in train)
    assert f"expert max-violation {max(train[-1]['max_violation']):.2f}" in result.stdout
    assert records[-1]["val_loss"] < math.log(65)


def test_eval_and_sample_read_a_llama_moe_run(moe_run, tmp_path):
    from tinylm.eval.loss import text_loss

    data_root, out, _ = moe_run
    text = tmp_path / "text.txt"
    text.write_text("ROMEO:\nWhat light through yonder window breaks?\n", encoding="utf-8")
    result = run_cli("tinylm.eval", "loss", "--ckpt", out, "--text", text, "--json", data_dir=data_root)
    assert result.returncode == 0, result.stderr
    model, tokenizer, _ = load_model(out)
    expected = text_loss(model, tokenizer, text.read_text(encoding="utf-8"))
    assert json.loads(result.stdout)["loss"] == pytest.approx(expected["loss"], rel=1e-5)
    result = run_cli("tinylm.sample", "--ckpt", out, "--prompt", "ROMEO:", "--max-new-tokens", 20, "--temperature", 0,
                     data_dir=data_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == generate_text(model, tokenizer, "ROMEO:", 20, temperature=0) + "\n"


def test_resume_rebuilds_the_saved_architecture_and_refuses_another(moe_run):
    data_root, out, _ = moe_run
    resumed = out.parent / "resumed"
    shutil.copytree(out, resumed)
    before = (resumed / "last.pt").read_bytes()
    for args, message in ((("--arch", "llama"), "--arch llama: the run in .* was started with --arch llama-moe"),
                          (("--balancing", "none"), "--balancing none: the run in .* started with --balancing loss_")):
        result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", resumed, "--resume", *args,
                         data_dir=data_root)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and re.search(message, result.stderr), result.stderr
        assert (resumed / "last.pt").read_bytes() == before
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", resumed, "--resume",
                     "--max-steps", 35, data_dir=data_root)  # no --arch: the checkpoint's own
    assert result.returncode == 0, result.stderr
    assert "llama-moe (loss_free balancing)" in result.stdout
    assert load_model(resumed)[0].config == load_model(out)[0].config
    records = [json.loads(line) for line in (resumed / "metrics.jsonl").read_text().splitlines()]
    new = records[len((out / "metrics.jsonl").read_text().splitlines()):]
    assert [r["step"] for r in new if r["event"] == "train"] == [35]  # continued from step 30 with the same model


@pytest.mark.parametrize("args, message", [
    (("--arch", "llama", "--balancing", "none"), "balancing='none' applies to a mixture of experts, and llama has"),
    (("--balancing", "aux_loss"), "balancing='aux_loss' applies to a mixture of experts, and gpt2 has"),
])
def test_balancing_without_experts_is_a_one_line_error(data_root, tmp_path, args, message):
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", tmp_path / "run", *args,
                     data_dir=data_root)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert "choose an architecture with experts (llama-moe)" in lines[0]
    assert not (tmp_path / "run").exists()


def test_each_architecture_gets_its_own_default_run_folder():
    from tinylm.train.recipes import default_run_name

    assert default_run_name("tinystories", "cpu", "gpt2") == "tinystories-cpu"  # as before --arch existed
    assert default_run_name("tinystories", "cpu", "llama") == "tinystories-llama-cpu"
    assert default_run_name("tinystories", "cpu", "llama-moe") == "tinystories-llama-moe-cpu"
    assert default_run_name("tinystories", "cpu", "llama-moe", "loss_free") == "tinystories-llama-moe-cpu"
    assert default_run_name("tinystories", "cpu", "llama-moe", "aux_loss") == "tinystories-llama-moe-aux_loss-cpu"


def test_train_help_says_max_seconds_budgets_training_time_only(capsys):
    from tinylm.cli.train import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--max-seconds S seconds of training steps alone" in help_text


def test_sample_help_says_its_float32_default_holds_on_every_device(capsys):
    """The help lists auto (bf16 or fp16 on CUDA) beside a float32 default; it says which one a GPU gets unasked."""
    from tinylm.cli.sample import parse_args
    from tinylm.runtime import resolve_dtype

    assert resolve_dtype(torch.device("cuda"), parse_args(["--ckpt", "run"]).dtype) == torch.float32
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "auto (CUDA: bf16 or fp16, else fp32), float32, bfloat16, float16 (default: float32)" in help_text


def test_ctrl_c_saves_last_pt_and_ends_with_one_line_exit_status_130_and_no_traceback(data_root, tmp_path):
    """The line ends with the whole command that resumes the run (it said "resume with --resume"): the user's, with
    --overwrite dropped and --resume added; run, it continues from the saved step."""
    out = tmp_path / "run"
    status, stdout, stderr = train_until_ctrl_c(out, "--overwrite", data_dir=data_root)
    assert status == 130 and "Traceback" not in stderr, stderr
    step = load_checkpoint(out / "last.pt")["step"]
    resume = shlex.join(["python", "-m", "tinylm.train", "shakespeare-char", "--profile", "smoke", "--max-steps",
                         "1000000", "--out", str(out), "--resume"])
    assert stdout.rstrip().endswith(f"interrupted at step {step}; saved {out / 'last.pt'}; to resume: {resume}")
    assert not (out / "run.owner").exists(), "the lock goes with the run"
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_root), "OMP_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, *shlex.split(resume)[1:]], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True) as process:
        plan = next(line for line in process.stdout if line.startswith("plan: "))
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=120)
    assert f"from step {step:,};" in plan and process.returncode == 130


def test_an_overwrite_cancelled_before_its_first_checkpoint_keeps_the_old_run_and_clears_killed_saves(
        smoke_run, tmp_path):
    """A mistaken --overwrite, stopped with Ctrl-C in its first steps, costs nothing: the old run is whole."""
    data_root, old_run, _ = smoke_run
    out = tmp_path / "run"
    shutil.copytree(old_run, out)
    old = {name: (out / name).read_bytes() for name in ("best.pt", "last.pt", "metrics.jsonl", "settings.json")}
    killed_saves = [out / ".last.pt.k1ll3d_0.tmp", out / ".best.pt.abcd1234.tmp"]  # as a kill -9 mid-save leaves them
    for path in killed_saves:
        path.write_bytes(b"half a checkpoint")
    status, stdout, stderr = train_until_ctrl_c(out, "--overwrite", data_dir=data_root)  # before the first evaluation
    assert status == 130, stderr
    assert {name: (out / name).read_bytes() for name in old} == old and find_checkpoint(out) == out / "best.pt"
    assert "nothing saved" in stderr + stdout and "is as it was" in stdout
    assert not any(path.exists() for path in killed_saves) and not (out / ".next-run").exists()
    assert f"removed 2 temporary file(s) that interrupted saves left in {out}" in stdout


def test_resume_and_overwrite_together_are_refused_before_anything_is_deleted(smoke_run, capsys):
    from tinylm.cli.train import parse_args

    with pytest.raises(SystemExit) as exit_info:
        parse_args(["shakespeare-char", "--out", str(smoke_run[1]), "--resume", "--overwrite"])
    assert exit_info.value.code == 2
    assert "argument --overwrite: not allowed with argument --resume" in capsys.readouterr().err


def test_a_second_run_into_a_busy_folder_stops_naming_the_first_and_a_dead_runs_lock_is_taken_over(data_root, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_root), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen([sys.executable, "-m", "tinylm.train", "shakespeare-char", "--profile", "smoke",
                              "--max-steps", "1000000", "--out", str(out)],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in first.stdout:  # the first run is training
            if line.startswith("step "):
                break
        second = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, data_dir=data_root)
        records = (out / "metrics.jsonl").read_text().splitlines()
    finally:
        first.kill()  # as kill -9 or a crash would: no chance to remove the lock
        first.wait()
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    [line] = second.stderr.strip().splitlines()
    assert line.startswith(f"error: {out} is in use by another run (process {first.pid} on ")
    assert "train into another --out folder" in line
    assert all(json.loads(record)["event"] in ("plan", "train") for record in records), "the second run wrote nothing"
    third = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, "--max-steps", 10,
                    data_dir=data_root)
    assert third.returncode == 0, third.stderr
    assert f"note: the run of process {first.pid} on " in third.stdout
    assert not (out / "run.owner").exists()


@pytest.mark.parametrize("damage, message", [
    ("cut short", r"train\.bin holds 1,003,8\d\d tokens but .*meta\.json records 1,003,854 .*; delete .* and prepare "
                  r"it again: python -m tinylm\.prepare shakespeare-char --out "),
    ("foreign ids", r"train\.bin holds token id \d+ at position [\d,]+, outside the vocabulary of 65 ids"),
])
def test_a_damaged_train_bin_is_a_one_line_error_naming_it(data_root, tmp_path, damage, message):
    data = tmp_path / "data"
    shutil.copytree(data_root / "shakespeare_char", data / "shakespeare_char")
    train_bin = data / "shakespeare_char" / "train.bin"
    if damage == "cut short":  # an interrupted copy
        train_bin.write_bytes(train_bin.read_bytes()[:-100])
    else:  # GPT-2 ids where characters belong, the same number of them
        size = train_bin.stat().st_size // 2
        train_bin.write_bytes(np.random.default_rng(0).integers(65, 50257, size).astype(np.uint16).tobytes())
    result = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", tmp_path / "run", data_dir=data)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert re.search(message, line), line
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_resuming_a_muon_run_with_adamw_says_which_optimizer_it_needs(smoke_run, tmp_path):
    """On main before this layout, --resume with AdamW on a Muon run ended in KeyError: 'param_groups'."""
    data_root, _, _ = smoke_run
    out = tmp_path / "muon"
    first = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--set", "optimizer=muon", "--out", out,
                    data_dir=data_root)
    assert first.returncode == 0, first.stderr
    resumed = run_cli("tinylm.train", "shakespeare-char", "--profile", "smoke", "--out", out, "--resume",
                      "--set", "optimizer=adamw", "--max-steps", 40, data_dir=data_root)
    assert resumed.returncode == 1 and "Traceback" not in resumed.stderr, resumed.stderr
    [line] = resumed.stderr.strip().splitlines()
    assert line.startswith("error: --set optimizer=adamw: the run in ") and "started with --set optimizer=muon" in line


def test_a_speedrun_target_that_is_no_number_is_a_one_line_error():
    """On main before this layout, bench speedrun --target nan raced six runs and reported nothing reached."""
    from tinylm.cli import bench

    with pytest.raises(SystemExit) as stopped:
        bench.cli(["speedrun", "--target", "nan"])
    assert stopped.value.code == ("error: --target must be a positive validation loss, got nan; shakespeare-char's "
                                  "default is 1.886")
