"""The learning-rate schedule and AdamW's weight-decay split."""

import math

import pytest
import torch

from tinylm.config import TrainConfig
from tinylm.train.optim import build_optimizer, learning_rate

CFG = TrainConfig(max_steps=111, warmup_steps=10, learning_rate=1e-3, min_lr=1e-4)
DECAY_STEPS = CFG.max_steps - 1 - CFG.warmup_steps  # the cosine spans steps warmup .. max_steps - 1


def test_warmup_is_linear_from_near_zero_up_to_the_peak():
    warm = [learning_rate(s, CFG) for s in range(CFG.warmup_steps)]
    steps = [b - a for a, b in zip(warm, warm[1:])]
    assert all(s == pytest.approx(steps[0]) for s in steps)
    assert warm[0] == pytest.approx(CFG.learning_rate / CFG.warmup_steps)
    assert warm[-1] == pytest.approx(CFG.learning_rate)
    assert learning_rate(CFG.warmup_steps, CFG) == pytest.approx(CFG.learning_rate)


def test_the_peak_is_the_learning_rate_and_the_end_is_min_lr():
    rates = [learning_rate(s, CFG) for s in range(CFG.max_steps + 1)]
    assert max(rates) == pytest.approx(CFG.learning_rate)
    assert rates[CFG.max_steps - 1] == pytest.approx(CFG.min_lr), "the last trained step runs at min_lr"
    assert rates[CFG.max_steps - 2] > CFG.min_lr
    assert min(rates) >= CFG.min_lr - 1e-12
    assert learning_rate(CFG.max_steps + 50, CFG) == pytest.approx(CFG.min_lr)  # stays there


def test_cosine_decay_is_monotone_and_half_way_is_the_mean():
    rates = [learning_rate(s, CFG) for s in range(CFG.warmup_steps, CFG.max_steps + 1)]
    assert all(b <= a for a, b in zip(rates, rates[1:]))
    half = CFG.warmup_steps + DECAY_STEPS // 2
    assert learning_rate(half, CFG) == pytest.approx((CFG.learning_rate + CFG.min_lr) / 2)


def test_cosine_shape_matches_the_formula_at_a_quarter():
    quarter = CFG.warmup_steps + DECAY_STEPS // 4
    expected = CFG.min_lr + (CFG.learning_rate - CFG.min_lr) * (1 + math.cos(math.pi / 4)) / 2
    assert learning_rate(quarter, CFG) == pytest.approx(expected)


def test_time_fraction_moves_the_decay_when_it_is_further_along():
    start = CFG.warmup_steps
    assert learning_rate(start, CFG, time_fraction=0.5) == pytest.approx((CFG.learning_rate + CFG.min_lr) / 2)
    assert learning_rate(start, CFG, time_fraction=1.0) == pytest.approx(CFG.min_lr)
    assert learning_rate(start, CFG, time_fraction=3.0) == pytest.approx(CFG.min_lr)
    half = CFG.warmup_steps + DECAY_STEPS // 2
    assert learning_rate(half, CFG, time_fraction=0.1) == learning_rate(half, CFG)  # steps are further along


def test_no_warmup_starts_at_the_peak():
    cfg = TrainConfig(max_steps=10, warmup_steps=0, learning_rate=2e-3, min_lr=0.0)
    assert learning_rate(0, cfg) == pytest.approx(2e-3)
    assert learning_rate(9, cfg) == pytest.approx(0.0)


def test_weight_decay_groups_hold_matrices_and_the_rest(make_model):
    model = make_model()
    cfg = TrainConfig(weight_decay=0.1)
    decayed, plain = build_optimizer(model, cfg, torch.device("cpu")).param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"])
    assert all(p.dim() == 1 for p in plain["params"])
    grouped = [id(p) for p in decayed["params"] + plain["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter once (tied head too)
    assert any(p is model.transformer.wte.weight for p in decayed["params"])


def test_one_step_with_zero_gradients_only_shrinks_matrices(make_model):
    """AdamW with a zero gradient moves a parameter only by decoupled decay: p <- p * (1 - lr * wd)."""
    model = make_model()
    cfg = TrainConfig(weight_decay=0.5, learning_rate=0.1, min_lr=0.0)
    optimizer = build_optimizer(model, cfg, torch.device("cpu"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            torch.testing.assert_close(p.detach(), before[name] * (1 - 0.1 * 0.5), msg=name)
        else:
            assert torch.equal(p.detach(), before[name]), name
