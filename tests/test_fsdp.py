"""`python -m tinylm.train ... --fsdp` under torchrun with gloo: a sharded run interrupted and resumed in 2 processes
gives the losses of an uninterrupted one exactly, and resumed in 1 process without sharding within 1e-5; its
checkpoint is in the format every command reads; ZeRO-1 (`--set zero=true`) trains the same; the combinations it
cannot train are one-line errors."""

import json
import os
import shutil
import sys

import pytest
import torch

from tests.helpers import REPO, run_cli
from tests.preloaded import run_python
from tinylm.train.checkpoint import load_checkpoint

# The smoke recipe at a constant rate after 2 warmup steps (min_lr = the peak), so that a run stopped at step 4 and
# resumed to 8 follows the schedule of one run to 8; 256 tokens a step: 2 micro-batches of 4 x 32 in one
# process, 1 on each of two.
RECIPE = ["shakespeare-char", "--profile", "smoke", "--batch-size", "4", "--set", "total_batch_tokens=256",
          "--set", "warmup_steps=2", "--set", "min_lr=0.003", "--set", "log_interval=1", "--set", "eval_interval=0"]


def torchrun(out, *args, data_root, processes=2):
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_root), "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    completed = run_python(launcher + ["-m", "tinylm.train", *RECIPE, "--out", str(out), *args], cwd=REPO, env=env,
                           timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def losses(out) -> list[float]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [record["loss"] for record in records if record["event"] == "train"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_root):
    """An uninterrupted sharded run of 8 steps, and one stopped after 4 (copied before it is resumed)."""
    folder = tmp_path_factory.mktemp("fsdp")
    torchrun(folder / "straight", "--fsdp", "--max-steps", "8", data_root=data_root)
    torchrun(folder / "stopped", "--fsdp", "--max-steps", "4", data_root=data_root)
    shutil.copytree(folder / "stopped", folder / "stopped-copy")
    return folder


def test_a_sharded_run_resumed_in_2_processes_gives_the_uninterrupted_losses_exactly(runs, data_root):
    torchrun(runs / "stopped", "--fsdp", "--max-steps", "8", "--resume", data_root=data_root)
    straight = losses(runs / "straight")
    assert len(straight) == 8 and straight[-1] < straight[0] - 0.3, straight
    assert losses(runs / "stopped") == straight


def test_a_sharded_run_resumes_in_1_process_unsharded_within_1e_5(runs, data_root):
    resumed = run_cli("tinylm.train", *RECIPE, "--max-steps", "8", "--resume", "--out", runs / "stopped-copy",
                      data_dir=data_root)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight, mixed = losses(runs / "straight"), losses(runs / "stopped-copy")
    assert mixed[:4] == straight[:4]
    assert max(abs(a - b) / b for a, b in zip(mixed, straight)) <= 1e-5, (mixed, straight)


def test_a_sharded_checkpoint_holds_whole_tensors_that_sample_and_export_read(runs, data_root, tmp_path):
    checkpoint = load_checkpoint(runs / "straight" / "last.pt")
    assert all(type(tensor) is torch.Tensor for tensor in checkpoint["model"].values())
    assert checkpoint["model"]["transformer.wte.weight"].shape == (checkpoint["model_config"]["vocab_size"], 32)
    moments = checkpoint["optimizer"]["state"]
    assert sorted(moments) == list(range(len(moments)))  # numbered as a plain AdamW numbers its parameters
    sampled = run_cli("tinylm.sample", "--ckpt", runs / "straight", "--max-new-tokens", "20", data_dir=data_root)
    assert sampled.returncode == 0 and sampled.stdout.strip(), sampled.stderr[-2000:]
    exported = run_cli("tinylm.interop", "export", "--ckpt", runs / "straight", "--format", "gguf",
                       "--out", tmp_path / "model.gguf", data_dir=data_root)
    assert exported.returncode == 0 and (tmp_path / "model.gguf").stat().st_size > 4 * 28_000, exported.stderr


def test_zero_1_chosen_with_set_zero_trains_what_fsdp_trains_and_saves_adamws_state(runs, data_root):
    """The other sharded way, selected from the command line: its losses are the sharded run's, to float32 rounding."""
    torchrun(runs / "zero", "--set", "zero=true", "--max-steps", "4", data_root=data_root)
    zero, straight = losses(runs / "zero"), losses(runs / "straight")
    assert max(abs(a - b) / b for a, b in zip(zero, straight[:4])) <= 1e-5, (zero, straight)
    checkpoint = load_checkpoint(runs / "zero" / "last.pt")
    assert checkpoint["train_config"]["zero"] and sorted(checkpoint["optimizer"]["state"]) == sorted(
        load_checkpoint(runs / "straight" / "last.pt")["optimizer"]["state"])


def test_fsdp_without_torchrun_is_one_line_that_says_how_to_start_it(data_root, tmp_path):
    result = run_cli("tinylm.train", *RECIPE, "--fsdp", "--out", tmp_path / "run", data_dir=data_root)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: --fsdp shards the model over torchrun's processes: start the run with torchrun")
    assert not (tmp_path / "run" / "last.pt").exists()
