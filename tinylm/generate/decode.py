"""Generating text, one token at a time: the decode loop and batches of prompts.

With a key/value cache (the default) the prompt is prefilled once and every later step feeds one token;
`use_cache=False` recomputes the whole context and gives the same tokens. When the context is full, the oldest
tokens are dropped so that the `keep` most recent remain (default: half the context, as llama.cpp's context
swapping) and are prefilled again: with absolute positions a window cannot slide by one token without recomputing
every cached key, and with RoPE the kept keys of deeper layers still saw the dropped tokens. Both paths follow this
policy, which keeps their tokens identical.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from ..errors import InputError
from ..model.gpt import GPT
from ..model.kv_cache import KVCache
from ..runtime import evaluating, model_device
from .calculator import Calculator
from .fast import fast_decode_step, fused_linear
from .sampling import Sampling, choose_next, sampling_and_options


def _check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
    if max_new_tokens < 0:
        raise InputError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise InputError(f"min_new_tokens must be between 0 and max_new_tokens ({max_new_tokens}), "
                         f"got {min_new_tokens}")


def _left_padded(prompts: Sequence[Sequence[int]], width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> tokens (B, width >= longest), each prompt ending at column `longest`, and pad (B,)."""
    longest = max(len(p) for p in prompts)
    tokens = torch.zeros(len(prompts), width, dtype=torch.long, device=device)
    for row, prompt in enumerate(prompts):
        tokens[row, longest - len(prompt) : longest] = torch.as_tensor(prompt, dtype=torch.long, device=device)
    pad = torch.tensor([longest - len(p) for p in prompts], device=device)
    return tokens, pad


@torch.inference_mode()  # like no_grad, and skips autograd's version counting: about 25% off a small model's step
def decode(
    model,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    sampling: Sampling = Sampling(),
    *,
    stop_tokens: Sequence[int] = (),
    min_new_tokens: int = 0,
    use_cache: bool | None = None,
    keep: int | None = None,
    vocab_limit: int | None = None,
    excluded_tokens: Sequence[int] = (),
    fast: bool = True,
    tool: Calculator | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,) long, once per step. A row that stops yields its stop token on that
    step (so a caller can tell which one ended it) and -1 on every later step.

    use_cache: None means "when the model supports it" (tinylm's GPT does; any model whose forward takes
    idx and returns (logits, loss) works without). `vocab_limit` excludes ids at or above it: the padding
    rows of an embedding rounded up to a multiple of 64 are not tokens; `excluded_tokens` are never chosen either
    (a chat reply's <|pad|>). `fast`: with the cache, run the steps after the prefill through
    `tinylm.generate.fast` where the model allows it (the same logits to float rounding, fewer calls); False:
    `GPT.decode_step` at every step. `tool`: a calculator the model calls in its text (tinylm.generate.calculator);
    the tokens it writes take a step each, in place of sampled ones.

    A row stops at any of `stop_tokens` (after `min_new_tokens`) or after `max_new_tokens`. Memory: the loop's
    buffer holds the prompt and at most two contexts' worth of new tokens, and keeps only those the model may still
    see, so `max_new_tokens` is only a count: 10**12 streams until stopped.

    One function on purpose: it is the loop notebook 7 reads top to bottom (the cache, the sliding context,
    the stops), and splitting it would scatter that reading.
    """
    _check_lengths(max_new_tokens, min_new_tokens)
    block_size = model.config.block_size
    keep = block_size // 2 if keep is None else keep
    if not 1 <= keep <= block_size:
        raise InputError(f"keep must be between 1 and block_size ({block_size}), got {keep}")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise InputError("every prompt needs at least one token (start from the end-of-text token to begin afresh)")
    supports_cache = isinstance(model, GPT)
    if use_cache and not supports_cache:
        raise InputError(f"{type(model).__name__} takes no key/value cache; use use_cache=False")
    use_cache = supports_cache if use_cache is None else use_cache
    device = model_device(model)
    longest = max(len(p) for p in prompts)
    # Room for the prompt and the new tokens, but never more than two contexts' worth of them: see `Memory` above.
    tokens, pad = _left_padded(prompts, longest + min(max_new_tokens, 2 * block_size), device)
    if not supports_cache and int(pad.max()) > 0:
        raise InputError(f"{type(model).__name__} takes no padding mask, so its prompts must have equal lengths")
    vocab_size = model.config.vocab_size
    if int(tokens.max()) >= vocab_size or int(tokens.min()) < 0:
        raise InputError(f"prompt token ids must be in [0, {vocab_size}), the model's vocabulary")
    batch_size = tokens.size(0)
    stops = torch.as_tensor(list(stop_tokens), dtype=torch.long, device=device)
    if len(stops) and not (0 <= int(stops.min()) and int(stops.max()) < vocab_size):
        raise InputError(f"stop token ids must be in [0, {vocab_size}), the model's vocabulary; "
                         f"got {list(stop_tokens)}")
    seen = None
    if sampling.repetition_penalty != 1:
        seen = torch.zeros(batch_size, vocab_size, dtype=torch.bool, device=device)  # (B, V): in the sequence yet?
        for row, prompt in enumerate(prompts):
            seen[row, torch.as_tensor(prompt, dtype=torch.long, device=device)] = True

    generator = sampling.generator(device)
    # the positions it can ever hold: the context, or the prompt and the new tokens where they are fewer
    cache = KVCache(model.config, batch_size, capacity=longest + max_new_tokens) if supports_cache else None
    # the head in the layout the CPU reads fastest, for either step (see tinylm.generate.fast); None: the model's own
    head = fused_linear(model.lm_head) if supports_cache else None
    # the fast step serves one new position after a prefill, which only the cached loop has: no copies for the other
    decode_step = (fast_decode_step(model) if fast and use_cache else None) or getattr(model, "decode_step", None)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    calls = tool.calls(prompts) if tool is not None else None
    with evaluating(model):
        length, start = longest, 0  # tokens[:, start:length] is the context the model sees
        cached_until, prefill = 0, True  # the cache holds tokens[:, start:cached_until]
        for step in range(max_new_tokens):
            if length - start > block_size:  # the context is full: keep its most recent tokens
                start, prefill = length - keep, True
            if length == tokens.size(1):  # the buffer is full: move the window to its start (it is <= block_size)
                tokens[:, : length - start] = tokens[:, start:length].clone()
                pad = (pad - start).clamp(min=0)
                length, cached_until, start = length - start, cached_until - start, 0
            if prefill or not use_cache:
                if cache is not None:
                    cache.reset((pad - start).clamp(min=0))
                cached_until, prefill = start, False
            if cache is None:
                logits = model(tokens[:, start:length])[0][:, -1]  # (B, vocab): the last position predicts
            else:
                logits = decode_step(tokens[:, cached_until:length], cache, head)  # the prompt, then one token
                cached_until = length
            logits = logits.float()
            if vocab_limit is not None and vocab_limit < logits.size(-1):
                logits[:, vocab_limit:] = float("-inf")
            if len(excluded_tokens):
                logits[:, list(excluded_tokens)] = float("-inf")
            if step < min_new_tokens and len(stops):
                logits[:, stops] = float("-inf")
            next_id = choose_next(logits, sampling, generator, seen)  # (B,)
            if calls is not None:
                next_id = calls.step(next_id, finished)
            if seen is not None:
                seen[torch.arange(batch_size, device=device), next_id] = True
            tokens[:, length] = next_id
            length += 1
            if not len(stops):
                yield next_id
                continue
            stopped_before = finished.clone()
            finished |= torch.isin(next_id, stops)
            yield torch.where(stopped_before, -1, next_id)
            if bool(finished.all()):
                return


def generate(model, idx: torch.Tensor, max_new_tokens: int, **options) -> torch.Tensor:
    """idx (B, T) -> (B, T + max_new_tokens): the prompts followed by their continuations.

    `options`: the sampler's settings (temperature=0, top_k=40, ..., or sampling=Sampling(...)) and `decode`'s
    keywords (use_cache, keep, vocab_limit, excluded_tokens, fast).
    """
    sampling, options = sampling_and_options(options)
    new = list(decode(model, idx.tolist(), max_new_tokens, sampling, **options))
    if not new:
        return idx
    return torch.cat([idx, torch.stack(new, dim=1).to(idx.device)], dim=1)


def generate_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, **options) -> list[list[int]]:
    """Prompts of any lengths -> each one's new tokens, up to its stop token (excluded) or max_new_tokens.
    `options` are `generate`'s, and `decode`'s stop_tokens and min_new_tokens."""
    sampling, options = sampling_and_options(options)
    stops = set(options.get("stop_tokens", ()))  # a stop token in a row's output is the one that ended it: left out
    continuations: list[list[int]] = [[] for _ in prompts]
    for next_ids in decode(model, prompts, max_new_tokens, sampling, **options):
        for row, token in enumerate(next_ids.tolist()):
            if token >= 0 and token not in stops:
                continuations[row].append(token)
    return continuations
