"""next_token_loss against F.cross_entropy, with and without a loss mask."""

import pytest
import torch
import torch.nn.functional as F

from tinylm.model.losses import next_token_loss

B, T, V = 3, 6, 11


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, T, V, generator=g, requires_grad=True)
    targets = torch.randint(0, V, (B, T), generator=g)
    return logits, targets


def test_equals_cross_entropy_over_every_position(batch):
    logits, targets = batch
    expected = F.cross_entropy(logits.reshape(B * T, V), targets.reshape(B * T))
    torch.testing.assert_close(next_token_loss(logits, targets), expected)


@pytest.mark.parametrize("dtype, loss_dtype", [(torch.bfloat16, torch.float32), (torch.float16, torch.float32),
                                               (torch.float32, torch.float32), (torch.float64, torch.float64)])
def test_the_loss_is_computed_in_at_least_float32_and_never_narrower_than_the_logits(batch, dtype, loss_dtype):
    logits, targets = batch
    loss = next_token_loss(logits.to(dtype), targets)
    assert loss.dtype == loss_dtype  # float64 logits (the exact checks of tests) must not be rounded to float32
    expected = F.cross_entropy(logits.to(dtype).to(loss_dtype).reshape(B * T, V), targets.reshape(B * T))
    torch.testing.assert_close(loss, expected, rtol=0, atol=0)


def test_masked_loss_is_cross_entropy_over_selected_positions_only(batch):
    logits, targets = batch
    mask = torch.rand(B, T, generator=torch.Generator().manual_seed(1)) < 0.4
    mask[0, 0] = True
    expected = F.cross_entropy(logits[mask], targets[mask])  # (n_selected, V) vs (n_selected,)
    torch.testing.assert_close(next_token_loss(logits, targets, mask), expected)


def test_masked_positions_get_no_gradient(batch):
    logits, targets = batch
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[:, -2:] = True
    next_token_loss(logits, targets, mask).backward()
    assert torch.all(logits.grad[~mask] == 0)
    assert torch.all(logits.grad[mask].abs().sum(-1) > 0)


def test_integer_mask_works_like_a_bool_mask(batch):
    logits, targets = batch
    mask = torch.zeros(B, T, dtype=torch.long)
    mask[1, 2:] = 1
    torch.testing.assert_close(next_token_loss(logits, targets, mask), next_token_loss(logits, targets, mask.bool()))


def test_targets_of_minus_one_never_count(batch):
    logits, targets = batch
    targets = targets.clone()
    targets[:, :2] = -1
    expected = F.cross_entropy(logits[:, 2:].reshape(-1, V), targets[:, 2:].reshape(-1))
    torch.testing.assert_close(next_token_loss(logits, targets), expected)


def test_empty_mask_is_an_error(batch):
    logits, targets = batch
    with pytest.raises(ValueError, match="selects no position"):
        next_token_loss(logits, targets, torch.zeros(B, T, dtype=torch.bool))


def test_mask_of_the_wrong_shape_is_an_error(batch):
    logits, targets = batch
    with pytest.raises(ValueError, match="shape"):
        next_token_loss(logits, targets, torch.ones(T, B, dtype=torch.bool))


def test_targets_that_do_not_match_the_logits_are_an_error(batch):
    """Transposed targets have the right number of elements but are wrong: no silent reshape."""
    logits, targets = batch
    with pytest.raises(ValueError, match="shape"):
        next_token_loss(logits, targets.T.contiguous())
    with pytest.raises(ValueError, match="shape"):
        next_token_loss(logits, targets[:, :-1])


def test_low_precision_logits_are_scored_in_float32(batch):
    logits, targets = batch
    half = logits.detach().bfloat16()
    loss = next_token_loss(half, targets)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, F.cross_entropy(half.float().reshape(-1, V), targets.reshape(-1)))
