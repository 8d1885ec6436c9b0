"""Sharded data parallelism on CPU with gloo: ZeRO-1 from scratch and PyTorch's FSDP2 train as DDP does.

One `torchrun --nproc_per_node=2` launch of tests/sharding_worker.py trains the same tiny GPT from the same weights
on the same batches with DDP, ZeRO-1 and FSDP2, and reports each one's losses and what each rank holds."""

import json
import os
import sys
from pathlib import Path

import pytest

from tests.preloaded import run_python
from tinylm.bench.measure import compare_sharding
from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT

WORKER = Path(__file__).with_name("sharding_worker.py")


@pytest.fixture(scope="module")
def three_ways(tmp_path_factory):
    out = tmp_path_factory.mktemp("sharding") / "ways.json"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    completed = run_python(launcher + [str(WORKER), "--out", str(out)], env={**os.environ, "OMP_NUM_THREADS": "1"},
                           timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.parametrize("way", ["zero", "fsdp"])
def test_a_sharded_way_gives_ddps_losses_within_1e_5_over_20_steps(three_ways, way):
    ddp, sharded = three_ways["ddp"]["losses"], three_ways[way]["losses"]
    assert len(sharded) == len(ddp) == 20
    assert max(abs(a - b) / b for a, b in zip(sharded, ddp)) <= 1e-5, (sharded, ddp)
    assert ddp[-1] < ddp[0] - 0.5, "the model learns the pattern: the comparison is of training, not of noise"


def test_zero_1_halves_the_optimizer_state_of_each_rank_and_fsdp_halves_everything(three_ways):
    ddp, zero, fsdp = (three_ways[way]["held"] for way in ("ddp", "zero", "fsdp"))
    for rank in (0, 1):
        assert ddp[rank]["optimizer"] == 2 * ddp[rank]["parameters"]  # AdamW's two moments, whole on every rank
        assert zero[rank]["parameters"] == ddp[rank]["parameters"]  # ZeRO-1 keeps every weight and gradient
        assert zero[rank]["gradients"] == ddp[rank]["gradients"]
        # the shard's two fp32 moments and its one-byte weight-decay mask: half of AdamW's state, plus 1/8 of it
        assert zero[rank]["optimizer"] == pytest.approx(ddp[rank]["optimizer"] / 2 + ddp[rank]["parameters"] / 8,
                                                        rel=0.01)
        for held in ("parameters", "gradients", "optimizer"):  # FSDP: a shard of each, about 1/2 with 2 ranks
            assert fsdp[rank][held] == pytest.approx(ddp[rank][held] / 2, rel=0.05), held


def test_the_bench_comparison_times_the_three_ways_and_counts_what_a_rank_holds(tmp_path):
    """In a world of one (the GPU script's case: FSDP's own cost), every way holds the whole model."""
    import torch.distributed as dist


    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
        result = compare_sharding(config, batch_size=2, rounds=2, device="cpu", dtype="float32")
    finally:
        dist.destroy_process_group()
    assert result["processes"] == 1 and set(result["round_ms"]) == {"ddp", "zero", "fsdp"}
    ddp = result["losses"]["ddp"]
    assert len(ddp) == 3 and ddp[2] < ddp[0], "AdamW steps on one batch lower its loss"
    for way in ("zero", "fsdp"):
        assert result["losses"][way] == pytest.approx(ddp, rel=1e-5), way
    assert all(len(ms) == 2 and min(ms) > 0 for ms in result["round_ms"].values())
    weights = GPT(config).num_parameters() * 4
    for way in ("ddp", "zero", "fsdp"):
        held = result["held"][way]
        mask = weights // 4 if way == "zero" else 0  # ZeRO-1's weight-decay mask: one byte per parameter
        assert held["weights"] == held["gradients"] == weights and held["optimizer"] == 2 * weights + mask, (way, held)
