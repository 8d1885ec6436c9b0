"""The ablation chain changes one thing per arm and ends at the library's families; seeded arms repeat exactly and
differ between seeds; the table and the verdicts follow the verdict rule (3 seeds per arm, ranges apart)."""

import dataclasses

import pytest

from tinylm.config import with_architecture
from tinylm.course.ablation import (
    DENSE_STEPS,
    ArmRun,
    ablation_table,
    architecture_chain,
    mixture_chain,
    parameter_counts,
    train_arms,
    verdicts,
)


def differing_fields(a, b) -> set[str]:
    return {k for k, v in dataclasses.asdict(a).items() if dataclasses.asdict(b)[k] != v}


def test_every_arm_changes_only_its_own_fields_and_the_chain_ends_at_the_library_families(tiny_config):
    base = tiny_config(n_head=4, n_embd=32)
    arms = architecture_chain(base)
    by_name = {arm.name: arm for arm in arms}
    assert arms[0].config == with_architecture(base, "gpt2") and arms[0].baseline is None
    for arm, (name, _, fields) in zip(arms[1:], DENSE_STEPS):
        assert arm.name == name
        assert differing_fields(arm.config, by_name[arm.baseline].config) == set(fields), name
    dense = arms[len(DENSE_STEPS)]
    assert dense.config == with_architecture(base, "llama")
    moe_arms = arms[len(DENSE_STEPS) + 1:]
    assert [arm.config.balancing for arm in moe_arms] == ["none", "aux_loss", "loss_free"]
    for arm in moe_arms:
        assert arm.baseline == dense.name
        assert arm.config == dataclasses.replace(with_architecture(base, "llama-moe"), balancing=arm.config.balancing)
    assert len({arm.name for arm in arms}) == len(arms)


def test_the_mixture_chain_is_the_chains_mixture_half_measured_against_the_dense_llama_block(tiny_config):
    base = tiny_config(n_head=4, n_embd=32)
    dense, *moe_arms = mixture_chain(base)
    assert dense.config == with_architecture(base, "llama") and dense.baseline is None
    whole = architecture_chain(base)[len(DENSE_STEPS) + 1:]
    assert [(a.name, a.change, a.config) for a in moe_arms] == [(a.name, a.change, a.config) for a in whole]
    assert all(arm.baseline == dense.name for arm in moe_arms)
    assert [arm.config.balancing for arm in mixture_chain(base, balancing=("aux_loss",))[1:]] == ["aux_loss"]


def test_mixture_arms_hold_more_parameters_at_about_the_dense_cost_per_token(tiny_config):
    arms = architecture_chain(tiny_config(n_head=4, n_embd=32))
    dense_total, dense_active = parameter_counts(arms[len(DENSE_STEPS)].config)
    total, active = parameter_counts(arms[-1].config)
    assert dense_total == dense_active and total > dense_total
    assert active < total and abs(active - dense_active) < 0.05 * dense_active


def test_seeded_arms_repeat_exactly_differ_between_seeds_and_interleave(tiny_config, train_config, tokens):
    train, val = tokens
    arms = architecture_chain(tiny_config(), balancing=("loss_free",))[-2:]  # the dense Llama block and one MoE
    order = []
    cfg = train_config(max_steps=4)
    runs = train_arms(arms, [0, 1], cfg, train, val, device="cpu", report=lambda run: order.append((run.seed, run.arm)))
    assert order == [(0, arms[0].name), (0, arms[1].name), (1, arms[0].name), (1, arms[1].name)]
    again = train_arms(arms[:1], [1], cfg, train, val, device="cpu", report=None)
    first = runs[arms[0].name]
    assert [run.seed for run in first] == [0, 1] and all(run.steps == 4 for run in first)
    assert first[1].val_loss == pytest.approx(again[arms[0].name][0].val_loss, abs=1e-6)
    assert first[0].val_loss != pytest.approx(first[1].val_loss, abs=1e-6)
    assert any("expert_load" in record for record in runs[arms[1].name][0].records)


def fake_runs(arms, values):
    return {arm.name: [ArmRun(arm.name, seed, v, 10, 1.0, [], None) for seed, v in enumerate(vs)]
            for arm, vs in zip(arms, values)}


def test_table_and_verdicts_tell_arms_apart_only_with_three_seeds_whose_ranges_do_not_overlap(tiny_config):
    arms = architecture_chain(tiny_config(n_head=4, n_embd=32), balancing=())[:4]
    # arm 2 beats arm 1 at every seed (3 each: told apart); arm 3 overlaps arm 2; arm 4 beats arm 3 at every seed,
    # but arm 3 has only 2 seeds: not told apart, however clear it looks
    runs = fake_runs(arms, [[2.0, 2.1, 2.05], [1.8, 1.85, 1.82], [1.82, 1.9, 1.84], [1.5, 1.6]])
    rows = ablation_table(arms, runs, bits_per_byte=lambda loss: loss * 2).splitlines()
    assert rows[0].endswith("| Δ vs baseline | told apart? |") and len(rows) == 2 + 4
    rows = rows[2:]
    assert rows[1].endswith("| -0.227 vs GPT-2 | yes |") and "| 3.647 |" in rows[1]  # mean 1.8233, doubled
    assert "1.823 ± 0.025 (3 seeds)" in rows[1]
    assert rows[2].endswith("| no |") and rows[3].endswith("| no |")
    sentences = verdicts(arms, runs)
    assert len(sentences) == 3
    assert ": told apart: every seed of +RMSNorm beats every seed of GPT-2" in sentences[0]
    assert "not told apart: the seeds overlap" in sentences[1]
    assert "not told apart: the ranges do not overlap, but with fewer than 3 seeds" in sentences[2]
