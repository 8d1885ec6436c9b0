"""The language-modelling loss a GPT carries: the mean cross-entropy of predicting token t+1 from tokens ≤ t.

A mask keeps only some positions (the answer of a prompt/answer pair, for answer-only fine-tuning), and the mean is
then over those, so a short answer weighs as much per token as a long one. A model's `loss_fn` attribute holds the
function, so that a notebook can swap in its own with the same signature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InputError


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of logits (B, T, V) against targets (B, T); mask (B, T) of bools selects positions.

    Targets equal to -1 never count, the convention PyTorch's cross_entropy calls ignore_index.
    """
    if targets.shape != logits.shape[:-1]:  # e.g. transposed targets would flatten to the right size, silently wrong
        raise InputError(f"targets have shape {tuple(targets.shape)} but logits of shape {tuple(logits.shape)} "
                         f"need targets of shape {tuple(logits.shape[:-1])}")
    # (B*T, V), in at least fp32 for a stable log-softmax: bf16/fp16 logits are widened, fp32 and fp64 ones kept
    flat_logits = logits.reshape(-1, logits.size(-1)).to(torch.promote_types(logits.dtype, torch.float32))
    flat_targets = targets.reshape(-1)  # (B*T,)
    if mask is not None:
        if mask.shape != targets.shape:
            raise InputError(f"loss mask has shape {tuple(mask.shape)} but targets have {tuple(targets.shape)}")
        flat_targets = flat_targets.masked_fill(~mask.reshape(-1).bool(), -1)
        if not bool((flat_targets != -1).any()):
            raise InputError("the loss mask selects no position: every sequence needs at least one target token")
    return F.cross_entropy(flat_logits, flat_targets, ignore_index=-1)
