"""Muon beside AdamW (the parameter split, each half equal to the torch optimizer it stands for, one schedule for
both, the gradient scaler, checkpoints that resume exactly) and the warmup-stable-decay schedule."""

import dataclasses

import pytest
import torch
from helpers import torch_muon_computing_in

import tinylm.train.muon
from tinylm.config import ConfigError, TrainConfig
from tinylm.train.optim import MuonWithAdamW, build_optimizer, learning_rate, muon_parameters, set_learning_rate
from tinylm.train.trainer import Trainer

CPU = torch.device("cpu")


def test_muon_takes_the_blocks_matrices_and_adamw_everything_else(make_model):
    model = make_model(tie_weights=False, n_experts=4, n_experts_active=2)
    names = dict(model.named_parameters())
    chosen = set(muon_parameters(model))
    assert chosen and all(names[n].ndim == 2 and n.startswith("transformer.h.") for n in chosen)
    assert not any(".router." in n for n in chosen)  # the router scores experts: AdamW's
    for outside in ("transformer.wte.weight", "transformer.wpe.weight", "lm_head.weight"):
        assert outside not in chosen
    assert any(".experts." in n for n in chosen)  # an expert's matrices are hidden layers like any MLP's

    optimizer = build_optimizer(model, TrainConfig(optimizer="muon"), CPU)
    in_muon = {id(p) for group in optimizer.muon.param_groups for p in group["params"]}
    in_adamw = {id(p) for group in optimizer.adamw.param_groups for p in group["params"]}
    assert in_muon == {id(names[n]) for n in chosen}
    assert not in_muon & in_adamw and in_muon | in_adamw == {id(p) for p in model.parameters()}


def test_adamw_alone_is_still_the_default(make_model):
    assert isinstance(build_optimizer(make_model(), TrainConfig(), CPU), torch.optim.AdamW)


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_each_half_steps_exactly_as_the_torch_optimizer_it_stands_for(make_model, monkeypatch, bf16_fast):
    """Ten scheduled steps of MuonWithAdamW against torch.optim.Muon on the block matrices and torch.optim.AdamW on
    the rest, with the same gradients and rates: max |Δ| = 0. Where bf16 is slow the Newton–Schulz iteration runs in
    float32, and torch's is cast to float32 to match."""
    monkeypatch.setattr(tinylm.train.muon, "bf16_is_fast", lambda device: bf16_fast)
    if not bf16_fast:
        torch_muon_computing_in(torch.float32, monkeypatch)
    cfg = TrainConfig(optimizer="muon", learning_rate=3e-3, muon_learning_rate=0.05, min_lr=3e-4, weight_decay=0.1,
                      warmup_steps=2, max_steps=10)
    ours_model, theirs_model = make_model(), make_model()
    ours = build_optimizer(ours_model, cfg, CPU)
    assert ours.muon.ns_dtype == (torch.bfloat16 if bf16_fast else torch.float32)
    chosen = set(muon_parameters(theirs_model))
    named = list(theirs_model.named_parameters())
    muon = torch.optim.Muon([p for n, p in named if n in chosen], lr=cfg.muon_learning_rate,
                            weight_decay=cfg.weight_decay, momentum=cfg.muon_momentum)
    rest = [p for n, p in named if n not in chosen]
    adamw = torch.optim.AdamW([{"params": [p for p in rest if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                               {"params": [p for p in rest if p.ndim < 2], "weight_decay": 0.0}],
                              lr=cfg.learning_rate, betas=(cfg.beta1, cfg.beta2), fused=True)
    generator = torch.Generator().manual_seed(0)
    for step in range(10):
        lr = learning_rate(step, cfg)
        set_learning_rate(ours, lr)
        for group in muon.param_groups:
            group["lr"] = lr * cfg.muon_learning_rate / cfg.learning_rate
        for group in adamw.param_groups:
            group["lr"] = lr
        for a, b in zip(ours_model.parameters(), theirs_model.parameters()):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        ours.step()
        muon.step()
        adamw.step()
    gap = max((a - b).abs().max().item() for a, b in zip(ours_model.parameters(), theirs_model.parameters()))
    assert gap == 0.0
    untrained = make_model().transformer.h[0].attn.c_attn.weight
    assert not torch.equal(ours_model.transformer.h[0].attn.c_attn.weight, untrained)


def test_one_schedule_drives_both_at_their_own_peaks(make_model):
    optimizer = build_optimizer(make_model(), TrainConfig(optimizer="muon", learning_rate=2e-3,
                                                          muon_learning_rate=0.04), CPU)
    set_learning_rate(optimizer, 1e-3)  # half the AdamW peak
    assert [g["lr"] for g in optimizer.muon.param_groups] == [pytest.approx(0.02)]
    assert [g["lr"] for g in optimizer.adamw.param_groups] == [1e-3, 1e-3]


def test_the_gradient_scaler_skips_a_step_whose_gradients_overflowed(make_model):
    """fp16 training's GradScaler (older GPUs) unscales, checks and steps MuonWithAdamW as it does a torch optimizer."""
    model = make_model()
    optimizer = build_optimizer(model, TrainConfig(optimizer="muon"), CPU)
    scaler = torch.amp.GradScaler("cpu", enabled=True)
    idx = torch.randint(37, (2, 16))

    def scaled_step(overflow: bool) -> None:
        scaler.scale(model(idx, idx)[1]).backward()
        if overflow:
            model.transformer.h[0].mlp.c_fc.weight.grad[0, 0] = float("inf")
        scaler.unscale_(optimizer)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

    before = [p.detach().clone() for p in model.parameters()]
    scale = scaler.get_scale()
    scaled_step(overflow=True)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # skipped, Muon's half too
    assert scaler.get_scale() < scale  # and the scale backed off
    scaled_step(overflow=False)
    assert not torch.equal(before[0], next(model.parameters()))


def test_a_muon_run_learns_and_resumes_bit_identically(make_model, train_config, tokens, tmp_path):
    train, val = tokens
    cfg = train_config(max_steps=8, eval_interval=3, optimizer="muon", muon_learning_rate=0.05)
    straight = Trainer(make_model(), cfg, train, val, out_dir=tmp_path / "straight", device="cpu")
    first_loss = straight.evaluate()["val_loss"]
    straight.fit()
    assert straight.evaluate()["val_loss"] < first_loss
    first = Trainer(make_model(), cfg, train, val, out_dir=tmp_path / "split", device="cpu")
    first.fit(stop_after=4)
    second = Trainer(make_model(seed=5), cfg, train, val, out_dir=tmp_path / "split", device="cpu")
    second.resume(tmp_path / "split")
    second.fit()
    for a, b in zip(straight.model.parameters(), second.model.parameters()):
        assert torch.equal(a, b)


def test_a_resumed_run_with_a_new_peak_rate_keeps_this_runs_ratio(make_model, train_config, tokens, tmp_path):
    train, val = tokens
    cfg = train_config(max_steps=4, optimizer="muon", learning_rate=1e-3, muon_learning_rate=0.02)
    Trainer(make_model(), cfg, train, val, out_dir=tmp_path, device="cpu").fit()
    resumed = Trainer(make_model(), dataclasses.replace(cfg, learning_rate=2e-3, min_lr=2e-4, max_steps=6), train,
                      val, out_dir=tmp_path, device="cpu")
    resumed.resume(tmp_path)
    assert [g["lr_ratio"] for g in resumed.optimizer.muon.param_groups] == [pytest.approx(10.0)]


def test_an_adamw_checkpoint_is_not_resumed_as_muon(make_model):
    adamw_state = build_optimizer(make_model(), TrainConfig(), CPU).state_dict()
    muon = build_optimizer(make_model(), TrainConfig(optimizer="muon"), CPU)
    assert isinstance(muon, MuonWithAdamW)
    with pytest.raises(ValueError, match="resume it with the optimizer it was trained with"):
        muon.load_state_dict(adamw_state)


WSD = TrainConfig(learning_rate=1e-2, min_lr=1e-3, warmup_steps=10, max_steps=111, schedule="wsd",
                  cooldown_fraction=0.5)  # 100 steps after warmup: the peak for 50, then 50 down


def test_wsd_holds_the_peak_then_decays_linearly_to_the_floor():
    rates = [learning_rate(step, WSD) for step in range(WSD.max_steps)]
    assert rates[9] == pytest.approx(1e-2) and rates[0] == pytest.approx(1e-3)  # the same warmup as the cosine
    assert all(rate == pytest.approx(1e-2) for rate in rates[10:61])
    assert rates[85] == pytest.approx((1e-2 + 1e-3) / 2)  # half-way through the cooldown: half-way down
    assert rates[-1] == pytest.approx(1e-3)
    falls = [a - b for a, b in zip(rates[60:], rates[61:])]
    assert all(fall == pytest.approx(9e-3 / 50) for fall in falls)  # a straight line


def test_wsd_follows_the_time_budget_like_the_cosine():
    timed = dataclasses.replace(WSD, max_steps=10_000, max_seconds=100.0)
    assert learning_rate(50, timed, time_fraction=0.5) == pytest.approx(1e-2)
    assert learning_rate(50, timed, time_fraction=0.75) == pytest.approx((1e-2 + 1e-3) / 2)
    assert learning_rate(50, timed, time_fraction=1.0) == pytest.approx(1e-3)


@pytest.mark.parametrize("bad, message", [
    (dict(optimizer="sgd"), "optimizer must be one of"),
    (dict(schedule="linear"), "schedule must be one of"),
    (dict(muon_learning_rate=0.0), "muon_learning_rate must be positive"),
    (dict(muon_momentum=1.0), "muon_momentum must lie in"),
    (dict(cooldown_fraction=0.0), "cooldown_fraction must lie in"),
])
def test_bad_training_options_are_refused(bad, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**bad)


def test_the_recipe_sets_how_many_newton_schulz_steps_muon_takes(make_model):
    optimizer = build_optimizer(make_model(), TrainConfig(optimizer="muon", muon_ns_steps=3), CPU)
    assert [group["ns_steps"] for group in optimizer.muon.param_groups] == [3]
