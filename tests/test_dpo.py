"""DPO: answer log-probabilities against a loop, the loss against its formula, ln 2 at the start, and a
gradient step that raises the chosen answer relative to the rejected one."""

import math

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT
from tinylm.posttrain.dpo.objective import answer_logprobs, dpo_loss


def test_answer_logprobs_match_a_loop():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    targets = torch.tensor([[-1, -1, 3, 4, -1], [-1, 6, 0, 2, 5]])
    expected = []
    for b in range(2):
        total = 0.0
        for t in range(5):
            if targets[b, t] != -1:
                total += math.log(torch.softmax(logits[b, t], -1)[targets[b, t]].item())
        expected.append(total)
    assert torch.allclose(answer_logprobs(logits, targets), torch.tensor(expected), atol=1e-5)


def test_loss_matches_formula_and_stats():
    pc, pr = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    rc, rr = torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -2.5])
    stats = dpo_loss(pc, pr, rc, rr, beta=0.5)
    margins = 0.5 * ((pc - rc) - (pr - rr))
    expected = -torch.log(torch.sigmoid(margins)).mean()
    assert torch.allclose(stats.loss, expected)
    assert torch.allclose(stats.margin, margins)
    assert stats.accuracy == 0.5  # first pair: +0.75, second: -0.75
    with pytest.raises(ValueError, match="beta must be positive"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)


def test_policy_equal_to_reference_gives_ln2_and_a_step_prefers_chosen():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
    x = torch.randint(0, 20, (4, 8))
    chosen = torch.full((4, 8), -1)
    chosen[:, 4:] = torch.randint(0, 20, (4, 4))
    rejected = torch.full((4, 8), -1)
    rejected[:, 4:] = torch.randint(0, 20, (4, 4))
    with torch.no_grad():
        logits, _ = model(x)
        ref_c, ref_r = answer_logprobs(logits, chosen), answer_logprobs(logits, rejected)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    logits, _ = model(x)
    stats = dpo_loss(answer_logprobs(logits, chosen), answer_logprobs(logits, rejected), ref_c, ref_r, beta=0.1)
    assert stats.loss.item() == pytest.approx(math.log(2), abs=1e-6)
    stats.loss.backward()
    optimizer.step()
    with torch.no_grad():
        logits, _ = model(x)
        after = dpo_loss(answer_logprobs(logits, chosen), answer_logprobs(logits, rejected), ref_c, ref_r, beta=0.1)
    assert after.loss < stats.loss and after.margin.mean() > 0
