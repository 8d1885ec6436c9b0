"""The ablation chain changes one thing per arm and ends at the library's families; seeded arms repeat exactly and
differ between seeds; the table and the verdicts follow the verdict rule (3 seeds per arm, ranges apart)."""

import dataclasses

import numpy as np
import pytest

from tinylm.config import with_architecture
from tinylm.course.ablation import (
    DENSE_STEPS,
    ArmRun,
    ablation_table,
    architecture_chain,
    hold_out_test,
    losses,
    mixture_chain,
    parameter_counts,
    step_outliers,
    train_arms,
    verdicts,
)
from tinylm.errors import InputError
from tinylm.eval.loss import evaluate_loss


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
    # the biases go first, so that +RMSNorm changes the norm alone (LayerNorm without its shift -> RMSNorm)
    assert [arm.name for arm in arms[1:3]] == ["+no-bias", "+RMSNorm"]
    assert by_name["+no-bias"].config.norm == "layernorm" and not by_name["+no-bias"].config.bias


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


def test_the_no_bias_arm_has_no_bias_and_no_shift_anywhere(tiny_config):
    import torch

    from tinylm.model.gpt import GPT

    no_bias = architecture_chain(tiny_config(n_head=4, n_embd=32))[1]
    with torch.device("meta"):
        names = [name for name, _ in GPT(no_bias.config).named_parameters()]
    assert names and not [name for name in names if name.endswith(".bias")]


def test_the_test_split_is_the_tail_of_the_tokens_cut_after_an_end_of_text():
    tokens = np.array([5, 6, 0, 7, 8, 9, 0, 1, 2, 3, 0, 4, 4])
    rest, test = hold_out_test(tokens, 5)
    assert rest.tolist() == tokens[:8].tolist() and test.tolist() == tokens[8:].tolist()
    rest, test = hold_out_test(tokens, 8, boundary=0)  # the cut at 5 moves to just after the 0 at index 6
    assert rest.tolist() == [5, 6, 0, 7, 8, 9, 0] and test.tolist() == [1, 2, 3, 0, 4, 4]
    rest_again, test_again = hold_out_test(tokens, 8, boundary=0)
    assert np.array_equal(test, test_again)  # fixed: the same tokens every time
    with pytest.raises(InputError, match="end-of-text"):
        hold_out_test(tokens, 2, boundary=0)
    with pytest.raises(InputError, match="test split"):
        hold_out_test(tokens, len(tokens))


def test_seeded_arms_repeat_exactly_differ_between_seeds_and_rotate(tiny_config, train_config, tokens):
    train, val = tokens
    train, test = hold_out_test(train, len(val))
    arms = architecture_chain(tiny_config(), balancing=("loss_free",))[-2:]  # the dense Llama block and one MoE
    order = []
    cfg = train_config(max_steps=4)
    runs = train_arms(arms, [0, 1], cfg, train, val, device="cpu", report=lambda run: order.append((run.seed, run.arm)),
                      test_data=test)
    assert order == [(0, arms[0].name), (0, arms[1].name), (1, arms[1].name), (1, arms[0].name)]  # rotated
    again = train_arms(arms[:1], [1], cfg, train, val, device="cpu", report=None)
    first = runs[arms[0].name]
    assert [run.seed for run in first] == [0, 1] and all(run.steps == 4 for run in first)
    assert first[1].val_loss == pytest.approx(again[arms[0].name][0].val_loss, abs=1e-6)
    assert first[0].val_loss != pytest.approx(first[1].val_loss, abs=1e-6)
    assert any("expert_load" in record for record in runs[arms[1].name][0].records)
    run = first[0]  # the test loss is the model's loss on every target of the held-out tokens
    assert run.test_loss == pytest.approx(evaluate_loss(run.model, test, run.model.config.block_size, 8, "cpu"),
                                          rel=1e-5)
    assert run.test_loss != pytest.approx(run.val_loss, abs=1e-6)
    assert losses(runs, arms[0].name, "test") == [r.test_loss for r in first]
    without = train_arms(arms[:1], [0], cfg, train, val, device="cpu", report=None)[arms[0].name][0]
    assert without.test_loss is None and without.val_loss == pytest.approx(run.val_loss, abs=1e-6)
    with pytest.raises(InputError, match="no test loss"):
        without.loss("test")


def fake_runs(arms, values, steps=None):
    steps = steps or [[10] * len(vs) for vs in values]
    return {arm.name: [ArmRun(arm.name, seed, v, n, 1.0, [], None, test_loss=v + 1) for seed, (v, n)
                       in enumerate(zip(vs, ns))]
            for arm, vs, ns in zip(arms, values, steps)}


def test_table_and_verdicts_tell_arms_apart_only_with_three_seeds_whose_ranges_do_not_overlap(tiny_config):
    arms = architecture_chain(tiny_config(n_head=4, n_embd=32), balancing=())[:4]
    # arm 2 beats arm 1 at every seed (3 each: told apart); arm 3 overlaps arm 2; arm 4 beats arm 3 at every seed,
    # but arm 3 has only 2 seeds: not told apart, however clear it looks
    runs = fake_runs(arms, [[2.0, 2.1, 2.05], [1.8, 1.85, 1.82], [1.82, 1.9, 1.84], [1.5, 1.6]])
    rows = ablation_table(arms, runs, bits_per_byte=lambda loss: loss * 2).splitlines()
    assert rows[0].endswith("| ms per step | val loss | bits per byte | Δ vs baseline | told apart? |")
    assert len(rows) == 2 + 4
    rows = rows[2:]
    assert rows[1].endswith("| -0.227 vs GPT-2 | yes |") and "| 3.647 |" in rows[1]  # mean 1.8233, doubled
    assert "1.823 ± 0.025 (3 seeds)" in rows[1] and "| 10–10 | 100 |" in rows[1]  # 1 s over 10 steps
    test_rows = ablation_table(arms, runs, split="test").splitlines()  # the test losses are the val losses + 1
    assert "| test loss |" in test_rows[0] and "2.823 ± 0.025 (3 seeds)" in test_rows[3]
    assert "on test loss" in verdicts(arms, runs, split="test")[0]
    assert rows[2].endswith("| no |") and rows[3].endswith("| no |")
    sentences = verdicts(arms, runs)
    assert len(sentences) == 3
    assert ": told apart: every seed of +no-bias beats every seed of GPT-2" in sentences[0]
    assert "not told apart: the seeds overlap" in sentences[1]
    assert "not told apart: the ranges do not overlap, but with fewer than 3 seeds" in sentences[2]


def test_a_run_off_its_arms_median_steps_under_a_clock_is_trained_again_and_replaced(monkeypatch, tiny_config,
                                                                                      train_config):
    """Under a budget of seconds, a run whose steps are far off its arm's median is trained again and the first run
    dropped; under a budget of steps nothing is re-run."""
    from tinylm.course import ablation

    arms = architecture_chain(tiny_config(n_head=4, n_embd=32), balancing=())[:2]
    calls = []

    def fake_train_one(arm, seed, **_):
        calls.append((arm.name, seed))
        slow = calls.count((arm.name, seed)) == 1 and (arm.name, seed) == ("GPT-2", 1)  # the first try only
        return ArmRun(arm.name, seed, 2.0 + seed / 10 + len(calls) / 100, 60 if slow else 100, 1.0, [], None)

    monkeypatch.setattr(ablation, "_train_one", fake_train_one)
    runs = train_arms(arms, [0, 1, 2], train_config(max_seconds=10), [], [], device="cpu", report=None)
    assert calls[-1] == ("GPT-2", 1) and len(calls) == 7
    assert [run.steps for run in runs["GPT-2"]] == [100, 100, 100] and [r.seed for r in runs["GPT-2"]] == [0, 1, 2]
    assert runs["GPT-2"][1].val_loss == pytest.approx(2.1 + 7 / 100)  # the re-run's, not the first try's
    calls.clear()
    runs = train_arms(arms, [0, 1, 2], train_config(max_seconds=None), [], [], device="cpu", report=None)
    assert len(calls) == 6 and [run.steps for run in runs["GPT-2"]] == [100, 60, 100]


def test_the_table_shows_each_arms_fewest_and_most_steps_and_flags_a_run_far_off_its_arms_median(tiny_config):
    arms = architecture_chain(tiny_config(n_head=4, n_embd=32), balancing=())[:3]
    values = [[2.0, 2.1, 2.05], [1.8, 1.85, 1.82], [1.9, 1.8, 1.85]]
    # arm 1: 66 is 27% under the median of 90 (flagged); arm 2: 81 is exactly 10% under (not flagged); arm 3: equal
    runs = fake_runs(arms, values, steps=[[66, 90, 91], [90, 81, 95], [120, 120, 120]])
    flagged = step_outliers(runs)
    assert [(run.arm, run.seed, median) for run, median in flagged] == [("GPT-2", 0, 90)]
    lines = ablation_table(arms, runs).splitlines()
    assert "| 66–91 ⚑ |" in lines[2] and "| 81–95 |" in lines[3] and "| 120–120 |" in lines[4]
    assert lines[-2] == "" and lines[-1].startswith("⚑ GPT-2 seed 0: 66 steps, -27% off its arm's median of 90 "
                                                    "(more than 10%)")
    assert not [line for line in ablation_table(arms, fake_runs(arms, values)).splitlines() if "⚑" in line]
