"""DDP (and ZeRO-1) on CPU with gloo: two processes compute what one process computes on their combined batch.

The tests run tests/ddp_worker.py under `torchrun --nproc_per_node=2` and compare with a plain single-process run of
the same script whose micro-batch holds both ranks' sequences. The two-process runs that end normally share one
world (`two_processes`), made one after another: starting a world costs more than any of these runs.
"""

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.helpers import REPO
from tests.preloaded import run_python
from tinylm.data.tokens import RandomWindowSampler
from tinylm.distributed import World, group_timeout
from tinylm.train.checkpoint import load_checkpoint

WORKER = Path(__file__).with_name("ddp_worker.py")
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def launch(folder, processes, *runs) -> dict[str, dict]:
    """`runs`, each (name, arguments), one after another in one world of `processes`; what each saved, by name, with
    the world's whole standard output."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    command = (launcher if processes > 1 else [sys.executable]) + [str(WORKER)]
    for i, (name, args) in enumerate(runs):
        command += ["--then"] * (i > 0) + ["--out", str(folder / f"{name}.pt"), *map(str, args)]
    completed = run_python(command, env=ENV, timeout=120 + 60 * len(runs))  # a busy machine's pace, per run
    assert completed.returncode == 0, completed.stderr[-3000:]
    return {name: {**torch.load(folder / f"{name}.pt", weights_only=True), "stdout": completed.stdout}
            for name, _ in runs}


def run(tmp_path, name, processes, *args):
    return launch(tmp_path, processes, (name, args))[name]


RECIPE = ("--batch-size", 2, "--steps", 6)  # two processes' share of one process's --batch-size 4
DROPOUT = (*RECIPE, "--dropout", 0.2)
CAPTURE = ("--batch-size", 2, "--accum", 2, "--capture-grads")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    """(the folder, what each run saved by name) of every two-process run that ends normally, in one world."""
    folder = tmp_path_factory.mktemp("two_processes")
    return folder, launch(
        folder, 2,
        ("gradients", CAPTURE), ("uneven", (*CAPTURE, "--uneven-targets")),
        ("straight", RECIPE), ("first_half", (*RECIPE, "--stop-after", 3, "--run-dir", folder / "run")),
        ("zero", (*RECIPE, "--zero")),
        ("zero_first_half", (*RECIPE, "--zero", "--stop-after", 3, "--run-dir", folder / "zero_run")),
        ("zero_resumed", (*RECIPE, "--zero", "--resume", folder / "zero_run" / "last.pt")),
        ("dropout", DROPOUT),
        ("dropout_first_half", (*DROPOUT, "--stop-after", 3, "--run-dir", folder / "dropout_run")),
        ("dropout_resumed", (*DROPOUT, "--resume", folder / "dropout_run" / "last.pt")),
        ("muon", ("--batch-size", 2, "--steps", 5, "--optimizer", "muon")),
        ("records0", ("--batch-size", 2, "--first-record-rank", 0)),
        ("records1", ("--batch-size", 2, "--first-record-rank", 1)),
        ("sharding", ("--batch-size", 8, "--sharding-bench")))


def assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=lambda m: f"{key}: {m}")


def test_ranks_draw_disjoint_slices_of_one_global_batch():
    tokens = np.arange(10_000, dtype=np.uint16)
    ranks = [RandomWindowSampler(tokens, 8, 3, seed=5, world=World(rank=r, size=2)) for r in range(2)]
    whole = RandomWindowSampler(tokens, 8, 6, seed=5)
    for _ in range(4):
        x0, _ = ranks[0].next_batch()
        x1, _ = ranks[1].next_batch()
        x, _ = whole.next_batch()
        assert torch.equal(torch.cat([x0, x1]), x), "the two ranks together draw what one process draws"
        assert not set(x0[:, 0].tolist()) & set(x1[:, 0].tolist()), "ranks see different windows"


def test_synced_gradients_equal_one_process_on_the_combined_batch(tmp_path, two_processes):
    """With accumulation (no_sync on the first micro-step), the averaged gradients equal the big batch's."""
    two = two_processes[1]["gradients"]
    one = run(tmp_path, "one", 1, "--batch-size", 4, "--accum", 2, "--capture-grads")
    assert (two["world_size"], one["world_size"]) == (2, 1)
    assert_close(two["result"], one["result"], atol=1e-6)
    assert any(g.abs().max() > 1e-3 for g in one["result"].values()), "the gradients are not trivially zero"


def test_with_uneven_counted_targets_two_ranks_give_the_token_mean_gradient_of_one_process(tmp_path, two_processes):
    """Ranks and micro-batches that count different numbers of targets (as chat batches do): the step's gradient is
    still that of the mean over every counted target of the global step, as one process computes it."""
    two = two_processes[1]["uneven"]
    one = run(tmp_path, "one", 1, "--batch-size", 4, "--accum", 2, "--capture-grads", "--uneven-targets")
    assert_close(two["result"], one["result"], atol=1e-6)


def test_a_two_process_checkpoint_resumes_in_one_process(tmp_path, two_processes):
    folder, two = two_processes
    straight = two["straight"]
    resumed = run(tmp_path, "resumed", 1, "--batch-size", 4, "--steps", 6, "--resume", folder / "run" / "last.pt")
    assert_close(straight["result"], resumed["result"], atol=1e-5)
    first_half = two["first_half"]["result"]
    assert any(not torch.allclose(first_half[k], straight["result"][k]) for k in first_half), "the resumed half trained"


def test_zero_1_trains_as_ddp_does_and_a_resumed_run_continues_exactly(two_processes):
    """ZeRO-1 in the Trainer (TrainConfig.zero) over two processes ends where DDP ends, to float32 rounding: the same
    AdamW update, made on shards. last.pt holds a plain AdamW's moments, gathered from the shards; a run stopped after
    3 steps and resumed from it in two processes, each cutting out its shard again, ends bit-identical to the
    uninterrupted one."""
    folder, two = two_processes
    straight, resumed = two["zero"], two["zero_resumed"]
    assert_close(straight["result"], two["straight"]["result"], atol=1e-5)
    saved = load_checkpoint(folder / "zero_run" / "last.pt")["optimizer"]
    assert sorted(saved["state"]) == list(range(len(straight["result"]) - 1))  # AdamW's numbering; lm_head is wte
    assert all(moments["step"] == 3 for moments in saved["state"].values())
    assert_close(straight["result"], resumed["result"], atol=0)
    assert resumed["val_loss"] == straight["val_loss"]


def test_zero_1_trains_as_ddp_and_holds_half_the_moments(two_processes):
    """bench sharding's comparison, 2 processes: ZeRO-1 trains as DDP does, and each rank holds half of AdamW's moments
    (plus its one-byte decay mask). The step peaks it prints are not compared here: on the CPU gloo frees a
    collective's tensors on a thread of its own, sooner or later, so a measured peak depends on the machine's load."""
    for result in two_processes[1]["sharding"]["result"]:
        assert result["losses"]["zero"] == pytest.approx(result["losses"]["ddp"], rel=1e-5)
        held = result["held"]
        weights = held["ddp"]["weights"]
        assert held["ddp"]["optimizer"] == 2 * weights  # both moments, whole
        assert held["zero"]["optimizer"] == pytest.approx(weights + weights / 8, rel=0.01)  # half of each, the mask
        assert all(result["step_peak"][way] > weights for way in ("ddp", "zero", "fsdp"))


def test_muon_under_ddp_ends_where_one_process_ends_on_the_combined_batch(tmp_path, two_processes):
    """Muon beside AdamW under DDP over gloo: every rank orthogonalises the same averaged gradients, so two processes
    end where one process ends on their combined batch. Not to the last bit: the gradients of one and of two processes
    differ in their last float digits, and Newton-Schulz in bfloat16 magnifies the weakest directions of a gradient
    (by ~a⁵ = 490 over five steps), so each matrix's change may differ by a few percent, never by more."""
    from tinylm.config import GPTConfig
    from tinylm.model.gpt import GPT

    two = two_processes[1]["muon"]["result"]
    one = run(tmp_path, "one", 1, "--batch-size", 4, "--steps", 5, "--optimizer", "muon")["result"]
    torch.manual_seed(0)  # the worker's initial weights
    start = GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32)).state_dict()
    for name in one:
        moved = (one[name] - start[name]).norm()
        assert (two[name] - one[name]).norm() <= 0.05 * moved + 1e-6, name
    assert (one["transformer.h.0.mlp.c_fc.weight"] - start["transformer.h.0.mlp.c_fc.weight"]).norm() > 0.01


def test_each_ranks_dropout_stream_survives_a_resume(tmp_path, two_processes):
    """Every rank draws its own dropout masks. The checkpoint holds each rank's RNG state, so two processes resuming
    a two-process run end bit-identical to an uninterrupted one. One process resumes it too: rank 0 continues its
    stream, rank 1's ends (it says so), and training goes on."""
    folder, two = two_processes
    straight, resumed = two["dropout"], two["dropout_resumed"]
    saved_rng = load_checkpoint(folder / "dropout_run" / "last.pt")["rng"]
    assert isinstance(saved_rng, list) and len(saved_rng) == 2, "one RNG state per rank"
    assert not torch.equal(saved_rng[0]["torch"], saved_rng[1]["torch"]), "the ranks' streams differ"
    assert_close(straight["result"], resumed["result"], atol=0)

    alone = run(tmp_path, "alone", 1, "--batch-size", 4, "--steps", 6, "--dropout", 0.2,
                "--resume", folder / "dropout_run" / "last.pt")
    # the two processes' --batch-size 2 each, one process's 4: the same sequences per step, as the line says
    assert ("resuming a 2-process run in 1 process: a step still trains on 4 sequences of 16 tokens; the dropout "
            "streams of ranks 1..1 end") in alone["stdout"]
    assert math.isfinite(alone["val_loss"])
    first_half = two["dropout_first_half"]["result"]
    assert any(not torch.equal(first_half[k], alone["result"][k]) for k in first_half), "the resumed half trained"


@pytest.mark.parametrize("early_rank", [0, 1])
def test_every_rank_makes_the_first_train_record_at_the_same_step_whatever_its_own_clock_says(two_processes,
                                                                                              early_rank):
    """Only `early_rank` is FIRST_RECORD_SECONDS into its session (its clock started earlier); the step's all-reduce
    carries that, so both ranks make the first train record after step 2, and the step_stats collective (GRPO's
    kind) pairs up instead of meeting the other rank's gradient all-reduce."""
    folder, two = two_processes
    result, out = two[f"records{early_rank}"], folder / f"records{early_rank}.pt"
    assert [Path(f"{out}.rank{rank}.records").read_text() for rank in (0, 1)] == ["2 4", "2 4"]
    assert math.isfinite(result["val_loss"])


def test_ctrl_c_on_one_rank_stops_every_rank_after_the_same_step_and_saves_a_resumable_last_pt(tmp_path,
                                                                                                two_processes):
    """SIGINT reaches rank 1 alone, mid-step 3: the request travels in the step loss's all-reduce, so rank 0
    stops after the same step instead of waiting in the next gradient all-reduce for a rank that left."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    out, run_dir = tmp_path / "interrupted.pt", tmp_path / "run"
    completed = run_python(launcher + [str(WORKER), "--out", str(out), "--batch-size", "2", "--steps", "6",
                                       "--run-dir", str(run_dir), "--interrupt-rank", "1"], env=ENV, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [Path(f"{out}.rank{rank}.interrupted").read_text() for rank in (0, 1)] == ["3", "3"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 3
    resumed = run(tmp_path, "resumed", 1, "--batch-size", 4, "--steps", 6, "--resume", run_dir / "last.pt")
    assert_close(two_processes[1]["straight"]["result"], resumed["result"], atol=1e-5)


def launch_or_fail_if_hung(*args, timeout=120) -> subprocess.CompletedProcess:
    """torchrun with 2 workers, stopped if they run past `timeout`: ranks waiting in collectives the others never
    join fail the test instead of hanging it (until the process group's 10-minute timeout)."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    process = subprocess.Popen(launcher + [str(WORKER), *map(str, args)], env=ENV, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # The workers run in sessions of their own; SIGTERM makes torchrun stop them (SIGKILL after 30 s).
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
        pytest.fail(f"the ranks were still running after {timeout} s: they hung\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def test_ctrl_c_on_one_rank_between_steps_stops_every_rank_after_the_next_step(tmp_path):
    """SIGINT reaches rank 1 alone during the evaluation after step 3: the request travels in step 4's loss
    all-reduce, and both ranks stop after step 4 and save it together."""
    out, run_dir = tmp_path / "interrupted.pt", tmp_path / "run"
    completed = launch_or_fail_if_hung("--out", out, "--batch-size", 2, "--steps", 6, "--run-dir", run_dir,
                                       "--interrupt-rank", 1, "--between-steps")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert [Path(f"{out}.rank{rank}.interrupted").read_text() for rank in (0, 1)] == ["4", "4"]
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 4


@pytest.mark.parametrize("rank", [0, 1])
def test_a_second_ctrl_c_on_one_rank_between_steps_stops_it_at_once_without_a_collective(tmp_path, rank):
    """Two SIGINTs reach one rank during the evaluation after step 3: the second stops it at once. Saving would
    gather every rank's RNG state, a collective the other rank (already in step 4) never joins, so both hung;
    the rank leaves without saving, the other one fails in its next collective, and last.pt keeps step 3."""
    out, run_dir = tmp_path / "interrupted.pt", tmp_path / "run"
    completed = launch_or_fail_if_hung("--out", out, "--batch-size", 2, "--steps", 6, "--run-dir", run_dir,
                                       "--interrupt-rank", rank, "--between-steps", "--ctrl-c", 2)
    assert completed.returncode != 0, "the other rank lost its peer mid-run"
    assert Path(f"{out}.rank{rank}.interrupted").read_text() == "3"
    assert not Path(f"{out}.rank{1 - rank}.interrupted").exists()
    assert torch.load(run_dir / "last.pt", weights_only=True)["step"] == 3  # the evaluation's checkpoint, intact
    if rank == 0:  # rank 0 writes the metrics: it says that it saved nothing
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        assert records[-1] == {"event": "interrupted", "step": 3, "checkpoint": None}


def test_a_diverging_rank_stops_every_rank_with_a_clear_message(tmp_path):
    """The step loss is averaged across ranks, so a NaN on rank 1 alone stops both ranks at the same step."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    completed = run_python(launcher + [str(WORKER), "--out", str(tmp_path / "x.pt"), "--batch-size", "2",
                                       "--poison-rank", "1"], env=ENV, timeout=180)
    assert completed.returncode != 0
    assert completed.stderr.count("TrainingDiverged: the loss became nan at step 0") >= 2, completed.stderr[-3000:]


@pytest.mark.parametrize("value", ["ten", "0", "-5", "nan"])
def test_a_timeout_that_is_not_a_positive_number_of_seconds_is_refused(monkeypatch, value):
    monkeypatch.setenv("TINYLM_DIST_TIMEOUT", value)
    with pytest.raises(ValueError, match=f"TINYLM_DIST_TIMEOUT='{value}' is not a positive number of seconds; unset "
                                         r"it for the default \(600\)"):
        group_timeout()
    monkeypatch.setenv("TINYLM_DIST_TIMEOUT", "2.5")
    assert group_timeout() == 2.5


# Runs `python -m tinylm.train ARGS` as torchrun's rank; rank 1 hangs in its third forward pass, as a rank stuck on a
# dead file system or a deadlock would.
HANGING_RANK_1 = """
import os, runpy, sys, time
if os.environ["RANK"] == "1":
    from tinylm.model import gpt
    forward, calls = gpt.GPT.forward, []
    def hang_on_the_third(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            time.sleep(300)
        return forward(self, *args, **kwargs)
    gpt.GPT.forward = hang_on_the_third
sys.argv = ["tinylm.train", *sys.argv[1:]]
runpy.run_module("tinylm.train", run_name="__main__", alter_sys=True)
"""


def test_a_hung_rank_ends_the_run_with_one_line_that_names_it_and_the_timeout(tmp_path, data_root):
    """Rank 0 waits in a collective for rank 1 until the process group's timeout (shortened to 4 s here), then
    stops with one line on its stderr: which rank it waited for, how long, and what to do; no traceback."""
    script, logs = tmp_path / "hang.py", tmp_path / "logs"
    script.write_text(HANGING_RANK_1)
    env = {**ENV, "TINYLM_DIST_TIMEOUT": "4", "TINYLM_DATA_DIR": str(data_root), "PYTHONPATH": str(REPO)}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "--log-dir", str(logs), "--redirects", "3"]  # each rank's stdout and stderr in a file of its own
    completed = run_python(launcher + [str(script), "shakespeare-char", "--profile", "smoke", "--out",
                                       str(tmp_path / "run")], env=env, timeout=120)
    assert completed.returncode != 0
    [rank0_stderr] = logs.glob("*/attempt_0/0/stderr.log")
    lines = rank0_stderr.read_text().strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0], rank0_stderr.read_text()[-3000:]
    assert lines[0].startswith("error: rank 0 waited the process group's timeout (4 s) for rank 1"), lines[0]
    assert lines[0].endswith("run again (a training run with --resume), and if that rank is only slow, allow more "
                             "time: TINYLM_DIST_TIMEOUT=SECONDS"), lines[0]
