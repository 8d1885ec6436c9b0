"""GRPO's pieces against direct computations: group advantages, the clipped objective token by token (value,
gradient, clip fraction), the k3 estimate of KL by sampling, and per-token log-probabilities."""

import pytest
import torch

from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT
from tinylm.posttrain.grpo.objective import clipped_policy_loss, group_advantages, kl_estimate, token_logprobs


def test_group_advantages_are_standardised_within_groups():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.1, 0.1], [1.0, 0.1, 0.0, 0.0]])
    advantages = group_advantages(rewards)
    assert torch.allclose(advantages.mean(dim=1), torch.zeros(3), atol=1e-6)
    assert torch.allclose(advantages[[0, 2]].std(dim=1), torch.ones(2), atol=1e-4)
    assert torch.equal(advantages[1], torch.zeros(4))  # one reward for all: nothing to learn
    assert torch.allclose(group_advantages(rewards, scale=False)[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    with pytest.raises(ValueError, match="group of one"):
        group_advantages(torch.ones(3, 1))


def reference_loss(logp, old_logp, advantages, mask, eps):
    total, count = 0.0, 0
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if mask[b, t]:
                ratio = torch.exp(logp[b, t] - old_logp[b, t])
                total = total + torch.minimum(ratio * advantages[b], ratio.clamp(1 - eps, 1 + eps) * advantages[b])
                count += 1
    return -total / count


def test_clipped_loss_matches_token_loop_in_value_and_gradient():
    torch.manual_seed(0)
    old = torch.randn(3, 5)
    new = (old + 0.4 * torch.randn(3, 5)).requires_grad_()
    advantages = torch.tensor([1.0, -0.5, 2.0])
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=torch.bool)
    result = clipped_policy_loss(new, old, advantages, mask, clip_eps=0.2)
    (grad,) = torch.autograd.grad(result.loss, new)
    new_ref = new.detach().clone().requires_grad_()
    expected = reference_loss(new_ref, old, advantages, mask, 0.2)
    (grad_ref,) = torch.autograd.grad(expected, new_ref)
    assert torch.allclose(result.loss, expected, atol=1e-6)
    assert torch.allclose(grad, grad_ref, atol=1e-6)
    assert torch.equal(grad[~mask], torch.zeros_like(grad[~mask]))


def test_clip_stops_the_push_only_in_the_advantage_direction():
    old = torch.zeros(4, 1)
    new = torch.log(torch.tensor([[1.5], [1.5], [0.5], [0.5]])).requires_grad_()  # ratios 1.5, 1.5, 0.5, 0.5
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    result = clipped_policy_loss(new, old, advantages, torch.ones(4, 1, dtype=torch.bool), clip_eps=0.2)
    (grad,) = torch.autograd.grad(result.loss, new)
    # Up too far with A > 0, down too far with A < 0: clipped, no gradient. The other two still learn.
    assert grad[0] == 0 and grad[3] == 0 and grad[1] != 0 and grad[2] != 0
    assert result.clip_fraction == 0.5


def test_at_ratio_one_the_loss_is_minus_the_mean_advantage():
    old = torch.randn(2, 3)
    advantages = torch.tensor([0.7, -0.2])
    mask = torch.ones(2, 3, dtype=torch.bool)
    result = clipped_policy_loss(old.clone(), old, advantages, mask)
    assert result.loss.item() == pytest.approx(-advantages.mean().item(), abs=1e-6)
    assert result.clip_fraction == 0.0 and result.kl == 0.0


def test_k3_estimates_kl_by_sampling():
    torch.manual_seed(0)
    p_logits, q_logits = torch.randn(6), torch.randn(6)
    log_p, log_ref = torch.log_softmax(p_logits, 0), torch.log_softmax(q_logits, 0)
    exact = (log_p.exp() * (log_p - log_ref)).sum().item()
    tokens = torch.multinomial(log_p.exp(), 200_000, replacement=True).view(1, -1)
    logp, ref = log_p[tokens], log_ref[tokens]
    assert kl_estimate(logp, ref, torch.ones_like(tokens, dtype=torch.bool)).item() == pytest.approx(exact, rel=0.03)


def test_token_logprobs_match_the_model():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=8))
    sequences = torch.randint(0, 11, (2, 6))
    logp = token_logprobs(model, sequences)
    for t in range(5):
        logits, _ = model(sequences[:, : t + 1])
        expected = torch.log_softmax(logits[:, -1], -1).gather(-1, sequences[:, t + 1 : t + 2]).squeeze(-1)
        assert torch.allclose(logp[:, t], expected, atol=1e-5)
