"""Scoring a model on a text: the loss per token and bits per byte.

The loss per token depends on the tokenizer; bits per byte (the total loss in nats / ln 2 / UTF-8 bytes) does not,
so it compares a character model with a BPE model, or two BPE vocabularies, on the same text. A longer text is cut
into non-overlapping windows, each token scored once, as validation does in training.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.conversations import pad_conversations
from ..data.tokens import gather_windows, to_device
from ..errors import InputError
from ..runtime import evaluating, model_device
from ..settings import option
from ..tokenizers.chat_template import RenderedChat


def target_losses(logits: torch.Tensor, targets: torch.Tensor, tokenizer=None) -> torch.Tensor:
    """Each target's next-token cross-entropy in nats: logits (..., V), targets (...) -> (...), in float32; 0 where a
    target is -1 (no loss there). The one rule every scorer in tinylm follows: with a `tokenizer`, logits past its
    vocabulary (an embedding padded to a multiple of 64) are left out, as when sampling, and a trimmed vocabulary's
    <unk> costs its `unk_penalty` more (TrimmedBPETokenizer), so the loss stays per GPT-2 token."""
    if tokenizer is not None:
        logits = logits[..., : tokenizer.vocab_size]
    losses = F.cross_entropy(logits.float().flatten(0, -2), targets.flatten(), ignore_index=-1,
                             reduction="none").view_as(targets)
    unk_id = getattr(tokenizer, "unk_id", None)
    return losses if unk_id is None else losses + tokenizer.unk_penalty * (targets == unk_id)


def check_vocabulary(model, tokenizer) -> None:
    """Refuse a tokenizer with more tokens than the model has rows: it is not the model's own."""
    if tokenizer.vocab_size > model.config.vocab_size:
        raise InputError(f"the tokenizer has {tokenizer.vocab_size:,} tokens but the model only "
                         f"{model.config.vocab_size:,}; use the checkpoint's own tokenizer")


@dataclass(frozen=True)
class LossOptions:
    """What `eval loss` scores with text_loss: a text file (its --batch-size is the shared flag's)."""

    text: Path | None = option("UTF-8 text file to score", type=Path, required=True)


def text_loss(model, tokenizer, text: str, batch_size: int = 8,
              device: str | torch.device | None = None) -> dict[str, Any]:
    """Score `text` with `model`: {"loss": nats per token, "nats": total, "tokens", "bytes", "bits_per_byte"}.

    `tokens` counts the predicted tokens and `bytes` the UTF-8 bytes they cover: bits_per_byte = nats / ln 2 / bytes.
    A BPE model predicts every token, the first from its end-of-text token, so every byte counts; a character
    model's first character is only context and its bytes do not count. `device` defaults to the model's;
    `batch_size` is the number of context windows per forward pass.
    """
    eot = getattr(tokenizer, "eot_token", None)
    ids = tokenizer.encode(text)
    if eot is not None:  # BPE: the end-of-text token is the context of the first token
        ids, scored_text = [eot, *ids], text
        if len(ids) < 2:
            raise InputError("the text is empty: there is nothing to score")
    else:  # characters: the first one is only context
        scored_text = text[1:]
        if len(ids) < 2:
            raise InputError(f"the text has {len(ids)} character(s); a character model needs at least 2 "
                             "(the first is only context for the second)")
    check_vocabulary(model, tokenizer)
    device = device if device is not None else model_device(model)
    nats, count = evaluate_loss_sum(model, np.asarray(ids, dtype=np.int64), model.config.block_size, batch_size, device,
                                    tokenizer=tokenizer)
    num_bytes = len(scored_text.encode("utf-8"))
    return {"loss": nats / count, "nats": nats, "tokens": count, "bytes": num_bytes,
            "bits_per_byte": nats / math.log(2) / num_bytes}


def texts_loss(model, tokenizer, texts: Iterable[str], batch_size: int = 8,
               device: str | torch.device | None = None) -> dict[str, Any]:
    """Score every text on its own (`text_loss`) and add them up: {"loss", "nats", "tokens", "bytes",
    "bits_per_byte", "texts"} over all of them.

    Two models scored on the same texts are scored on the same bytes, whatever their tokenizers, so their bits
    per byte compare directly; their losses per token do not.
    """
    results = [text_loss(model, tokenizer, text, batch_size, device) for text in texts]
    if not results:
        raise InputError("no texts to score")
    nats, tokens, num_bytes = (sum(result[key] for result in results) for key in ("nats", "tokens", "bytes"))
    return {"loss": nats / tokens, "nats": nats, "tokens": tokens, "bytes": num_bytes,
            "bits_per_byte": nats / math.log(2) / num_bytes, "texts": len(results)}


def evaluation_windows(num_tokens: int, block_size: int) -> list[tuple[int, int]]:
    """(start, first_scored) pairs: windows of block_size + 1 tokens that score each target exactly once.

    Windows step by block_size; the last one is moved back to end at the final token, and only its
    targets the previous windows did not reach are scored.
    """
    if num_tokens < 2:
        raise InputError("a validation split needs at least 2 tokens")
    window = min(block_size, num_tokens - 1)
    windows, start = [], 0
    while start + window < num_tokens - 1:
        windows.append((start, 0))
        start += window
    last_start = num_tokens - 1 - window
    windows.append((last_start, start - last_start))
    return windows


@torch.no_grad()
def evaluate_loss_sum(model, tokens: np.ndarray, block_size: int, batch_size: int, device, autocast_ctx=None,
                      tokenizer=None, rank: int = 0, world_size: int = 1, skip_unk: bool = False) -> tuple[float, int]:
    """(total nats, number of targets) of next-token cross-entropy over every target of `tokens`.

    The sum behind `evaluate_loss`; callers that combine losses across texts or convert them to bits per byte need
    the total rather than the mean. Each target costs what `target_losses` says with this `tokenizer`; `skip_unk`
    scores only the targets that are not <unk> (a training split has none: every one of its tokens is kept).
    Under DDP, rank r scores windows r, r + world_size, ...; the callers add up the ranks' sums. The host
    reads the total once, at the end, and the model's training mode comes back however the evaluation ends.
    """
    valid_ids = tokenizer.vocab_size if tokenizer is not None else getattr(getattr(model, "config", None),
                                                                           "vocab_size", None)
    unk_id = getattr(tokenizer, "unk_id", None)
    windows = evaluation_windows(len(tokens), block_size)[rank::world_size]
    window = min(block_size, len(tokens) - 1)
    device = torch.device(device)
    # The sum stays on the device until the end: reading it per batch would make the host wait for every batch.
    # float64 (MPS has none: float32 there), so that a long split's sum loses nothing to rounding.
    total_loss = torch.zeros((), dtype=torch.float32 if device.type == "mps" else torch.float64, device=device)
    total_count = 0
    skipped = torch.zeros_like(total_loss)  # <unk> targets left out by skip_unk
    with evaluating(model):
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            batch = torch.from_numpy(gather_windows(tokens, [s for s, _ in chunk], window + 1, valid_ids)).to(device)
            x, y = batch[:, :-1], batch[:, 1:]  # (b, T) each
            with autocast_ctx or contextlib.nullcontext():
                logits, _ = model(x)
            losses = target_losses(logits, y, tokenizer)  # (b, T)
            # (b, T): the targets no earlier window scored
            first_scored = torch.tensor([first for _, first in chunk], device=device)  # (b,)
            scored = torch.arange(window, device=device) >= first_scored[:, None]
            if skip_unk and unk_id is not None:
                skipped += (scored & (y == unk_id)).sum()
                scored &= y != unk_id
            total_loss += torch.where(scored, losses, 0.0).sum(dtype=total_loss.dtype)
            total_count += sum(window - first for _, first in chunk)
    nats, left_out = torch.stack((total_loss, skipped)).tolist()  # one read: the host waits for the device once
    return nats, total_count - int(left_out)


def evaluate_loss(model, tokens: np.ndarray, block_size: int, batch_size: int, device, autocast_ctx=None,
                  tokenizer=None, skip_unk: bool = False) -> float:
    """Mean next-token cross-entropy over every target of `tokens` (all len(tokens) - 1 of them, or those that are
    not <unk>); see evaluate_loss_sum."""
    total_loss, total_count = evaluate_loss_sum(model, tokens, block_size, batch_size, device, autocast_ctx, tokenizer,
                                                skip_unk=skip_unk)
    return total_loss / total_count


@torch.no_grad()
def answer_loss_split(model, conversations: Sequence[RenderedChat], tokenizer, token: int,
                      device=None) -> dict[str, Any]:
    """Where a chat model's answer loss sits: the answer targets that are `token` (notebook 9: `<|im_end|>`) against
    the rest, each part's mean loss in nats (`target_losses`) and count, the mean over both (`answer_loss_sum`'s) and
    the share of the total loss at `token`."""
    device = device if device is not None else model_device(model)
    sums, counts = {"token": 0.0, "rest": 0.0}, {"token": 0, "rest": 0}
    with evaluating(model):
        for chat in conversations:
            ids = torch.tensor(chat.ids, device=device)
            losses = target_losses(model(ids[None, :-1])[0][0], ids[1:], tokenizer)  # (T - 1,)
            answer = torch.tensor(chat.is_answer[1:], device=device)
            at_token = answer & (ids[1:] == token)
            for part, where in (("token", at_token), ("rest", answer & ~at_token)):
                sums[part] += losses[where].sum().item()
                counts[part] += int(where.sum())
    total = sums["token"] + sums["rest"]
    return {"mean": total / sum(counts.values()), "token": sums["token"] / counts["token"],
            "rest": sums["rest"] / counts["rest"], "token_share": sums["token"] / total, "counts": counts}


@torch.no_grad()
def answer_loss_sum(model, conversations: Sequence[RenderedChat], batch_size: int, device, pad_id: int,
                    autocast_ctx=None, tokenizer=None, rank: int = 0, world_size: int = 1) -> tuple[float, int]:
    """(total nats, answer tokens) of next-token cross-entropy over the answer tokens of `conversations`.

    Conversations are scored in length order (little padding); under DDP rank r scores batches r, r + world_size,
    .... Each target costs what `target_losses` says with this `tokenizer`.
    """
    order = np.argsort([len(c) for c in conversations], kind="stable")
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)][rank::world_size]
    total, count = 0.0, 0
    with evaluating(model):
        for batch in batches:
            x, y = to_device(device, *pad_conversations([conversations[i] for i in batch], pad_id))
            with autocast_ctx or contextlib.nullcontext():
                logits, _ = model(x)
            total += target_losses(logits, y, tokenizer)[y != -1].sum().item()
            count += int((y != -1).sum())
    return total, count
