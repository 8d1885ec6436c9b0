"""Training the Llama-style family: it learns, a mixture of experts logs its load, the balancing modes do their job."""

import dataclasses
import math
import os
import sys

import numpy as np
import pytest
import torch

from tests.preloaded import run_python
from tinylm.config import with_architecture
from tinylm.model.gpt import GPT
from tinylm.model.moe import moe_layers
from tinylm.train.trainer import Trainer


@pytest.fixture
def arch_model(tiny_config):
    """Factory: a tiny model of the block family `arch`, with config overrides, initial weights fixed by `seed`."""

    def make(arch: str, seed: int = 0, **overrides) -> GPT:
        torch.manual_seed(seed)
        return GPT(dataclasses.replace(with_architecture(tiny_config(), arch), **overrides))

    return make


@pytest.fixture
def skewed_tokens():
    """Token splits with Zipf-like frequencies: a few tokens dominate, so unbalanced routing piles onto few experts."""
    rng = np.random.default_rng(0)
    frequency = 1 / np.arange(1, 38) ** 1.5
    ids = rng.choice(37, 3000, p=frequency / frequency.sum()).astype(np.uint16)
    return ids[:2400], ids[2400:]


def train_records(arch_model, train_config, tokens, arch="llama-moe", steps=60, **overrides):
    train, val = tokens
    records = []
    cfg = train_config(max_steps=steps, warmup_steps=min(2, steps - 1), log_interval=20)
    trainer = Trainer(arch_model(arch, **overrides), cfg, train, val, device="cpu", callbacks=[records.append])
    trainer.fit()
    return trainer, [r for r in records if r["event"] == "train"]


@pytest.mark.parametrize("arch", ["llama", "llama-moe"])
def test_the_llama_family_learns_the_pattern(arch_model, train_config, tokens, arch):
    train, val = tokens
    losses = []
    cfg = train_config(max_steps=100, learning_rate=1e-2, min_lr=1e-3)
    trainer = Trainer(arch_model(arch), cfg, train, val, device="cpu",
                      callbacks=[lambda r: losses.append(r["loss"]) if r["event"] == "train" else None])
    final = trainer.fit()
    assert losses[0] > 0.9 * math.log(37)  # about uniform over the 37 tokens at the start
    assert final["val_loss"] < 0.5 * losses[0]


def test_loss_free_balancing_undoes_the_collapse_that_no_balancing_shows(arch_model, train_config, skewed_tokens):
    """On skewed tokens, routing without balancing piles onto few experts (max-violation near its ceiling of
    E/k - 1 = 3); loss-free biases spread the same tokens nearly evenly."""
    _, unbalanced = train_records(arch_model, train_config, skewed_tokens, balancing="none", bias_update_rate=0.01)
    _, loss_free = train_records(arch_model, train_config, skewed_tokens, balancing="loss_free", bias_update_rate=0.01)
    assert min(unbalanced[-1]["max_violation"]) > 1.5
    assert max(loss_free[-1]["max_violation"]) < 0.5


def test_loss_free_biases_move_against_the_load_error(arch_model, train_config, skewed_tokens):
    """After one step each bias moved by exactly the rate: down for experts above the mean load, up below it."""
    rate = 0.01
    trainer, records = train_records(arch_model, train_config, skewed_tokens, steps=1, balancing="loss_free",
                                     bias_update_rate=rate)
    for layer, load in zip(moe_layers(trainer.model), records[0]["expert_load"]):
        load = torch.tensor(load)
        expected = rate * torch.sign(1 / len(load) - load)
        assert (expected < 0).any() and (expected > 0).any()
        torch.testing.assert_close(layer.expert_bias, expected, atol=1e-7, rtol=0)
    trainer, _ = train_records(arch_model, train_config, skewed_tokens, steps=1, balancing="none",
                               bias_update_rate=rate)
    assert all(not layer.expert_bias.any() for layer in moe_layers(trainer.model)), "no biases without loss_free"


def reference_aux_loss(model: GPT, x: torch.Tensor) -> float:
    """Switch Transformer's balancing loss, coef * E * sum_i f_i * P_i per layer, from the routers' own logits."""
    logits = []
    hooks = [layer.router.register_forward_hook(lambda module, inputs, out: logits.append(out.detach()))
             for layer in moe_layers(model)]
    with torch.no_grad():
        model.eval()
        model(x)
    for hook in hooks:
        hook.remove()
    total = 0.0
    for layer, layer_logits in zip(moe_layers(model), logits):
        scores = layer_logits.softmax(dim=-1)  # (N, E)
        chosen = scores.topk(layer.top_k, dim=-1).indices
        fraction = torch.bincount(chosen.flatten(), minlength=layer.n_experts).float() / chosen.numel()
        total += layer.aux_loss_coef * layer.n_experts * float((fraction * scores.mean(dim=0)).sum())
    return total


@pytest.mark.parametrize("balancing", ["aux_loss", "none"])
def test_the_logged_loss_includes_the_auxiliary_balancing_loss(arch_model, train_config, tokens, balancing):
    train, val = tokens
    model = arch_model("llama-moe", balancing=balancing, aux_loss_coef=0.1)
    trainer = Trainer(model, train_config(), train, val, device="cpu")
    x, y = trainer.sampler.next_batch("cpu")
    with torch.no_grad():
        model.eval()
        cross_entropy = model(x, y)[1].item()  # evaluation mode: the language-modelling loss alone
    aux = reference_aux_loss(model, x) if balancing == "aux_loss" else 0.0
    trainer.sampler.next_batch = lambda device: (x, y)
    model.train()
    logged = trainer._optimizer_step().loss
    assert balancing == "none" or aux > 0.1  # about coef per layer: clearly visible next to the tolerance
    assert logged == pytest.approx(cross_entropy + aux, abs=1e-5)


def test_train_records_carry_the_expert_load(arch_model, train_config, tokens, tmp_path):
    import json

    train, val = tokens
    model = arch_model("llama-moe")
    Trainer(model, train_config(max_steps=4, log_interval=2), train, val, out_dir=tmp_path, device="cpu").fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_records_ = [r for r in records if r["event"] == "train"]
    assert [r["step"] for r in train_records_] == [2, 4]
    n_experts = model.config.n_experts
    for record in train_records_:
        assert len(record["expert_load"]) == len(record["max_violation"]) == model.config.n_layer
        for load, violation in zip(record["expert_load"], record["max_violation"]):
            assert len(load) == n_experts and sum(load) == pytest.approx(1.0)
            assert violation == pytest.approx(max(load) * n_experts - 1)
    assert "expert_load" not in records[-1], "only train records carry it"


def test_a_dense_models_records_have_no_expert_load(arch_model, train_config, tokens):
    _, records = train_records(arch_model, train_config, tokens, arch="llama", steps=2)
    assert records and all("expert_load" not in r and "max_violation" not in r for r in records)


DDP_WORKER = """
import sys, dataclasses
import numpy as np, torch
from tinylm.config import GPTConfig, TrainConfig, with_architecture
from tinylm.distributed import init_distributed, teardown
from tinylm.model.gpt import GPT
from tinylm.model.moe import moe_layers
from tinylm.train.trainer import Trainer

torch.set_num_threads(1)
world = init_distributed()
tokens = np.random.default_rng(0).integers(0, 37, 4000).astype(np.uint16)
torch.manual_seed(0)
config = with_architecture(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32), "llama-moe")
model = GPT(dataclasses.replace(config, bias_update_rate=0.01))
cfg = TrainConfig(batch_size=2, max_steps=4, warmup_steps=1, eval_interval=0, log_interval=100, seed=0, dtype="float32")
trainer = Trainer(model, cfg, tokens, tokens[:500], device="cpu", world=world)
trainer.fit()
torch.save({"biases": [layer.expert_bias for layer in moe_layers(model)], "weights": model.state_dict()},
           f"{sys.argv[1]}/rank{world.rank}.pt")
teardown()
"""


def test_ddp_keeps_the_loss_free_biases_identical_across_ranks(tmp_path):
    """Each rank routes its own tokens, but the load is summed over ranks before the biases move."""
    (tmp_path / "worker.py").write_text(DDP_WORKER)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    completed = run_python(launcher + [str(tmp_path / "worker.py"), str(tmp_path)],
                           env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=180)
    assert completed.returncode == 0, completed.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for a, b in zip(ranks[0]["biases"], ranks[1]["biases"]):
        assert a.abs().sum() > 0 and torch.equal(a, b)
    assert all(torch.equal(ranks[0]["weights"][k], ranks[1]["weights"][k]) for k in ranks[0]["weights"])
