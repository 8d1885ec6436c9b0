"""Generating text, one token at a time: the decode loop, batches of prompts, and streaming text.

Each step runs the model on the context, takes the logits of the last position and lets the
samplers (`tinylm.sampling`) choose the next token. With a key/value cache (`tinylm.kv_cache`, the
default for tinylm's GPT) the prompt is prefilled once and every later step feeds one token;
`use_cache=False` recomputes the whole context at every step, and gives the same tokens.

Context policy. The model sees at most `block_size` tokens. When the context is full, the oldest
tokens are dropped so that the `keep` most recent remain (default: half the context, as llama.cpp
does) and, with a cache, those are prefilled again. Sliding the window by one token instead would
mean recomputing every cached key at each step, because GPT-2's positions are absolute; that is
`keep=block_size`, exact and slow. A prompt longer than the context is cropped by the same rule.
Both paths follow the same policy, which is what makes their tokens identical.

Batches. Prompts of different lengths are left-padded and masked (see `tinylm.kv_cache`), so each
row computes what it would alone. The rows share one window: when the longest row fills the
context, every row is cropped at the same column.

Stopping. A row stops at any of `stop_tokens` (after at least `min_new_tokens` new tokens; the stop
token is not returned) or after `max_new_tokens`. `stream` also stops at `stop` strings, which it
never prints; it holds back text that could be the start of one. A stream knows which of these ended
it (`TextStream.stop_reason`), so a caller can say so rather than guess.

Memory. The loop keeps only the tokens the model may still see: a buffer of the prompt plus at most
two contexts, whose window moves back to its start when it reaches the end. So `max_new_tokens` is
only a count; 10**12 streams until stopped, at the memory of a short generation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .kv_cache import KVCache
from .model import GPT
from .runtime import model_device
from .sampling import Sampling, choose_next


def _check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(f"min_new_tokens must be between 0 and max_new_tokens ({max_new_tokens}), "
                         f"got {min_new_tokens}")


def _decoding_head(model: GPT):
    """The LM head as decoding reads it: every step reads every weight once, and a GPT-2-vocabulary model's
    biggest matrix is the (vocab, C) head. PyTorch's CPU matrix-vector kernel reads that layout at about half
    the speed of a (C, vocab) copy (4.5 vs 1.9 ms for 50304 x 256 in fp32 on 2 cores), so on CPU one
    generation keeps a transposed copy. None: the model's own head."""
    head = model.lm_head
    if model_device(model).type != "cpu" or head.bias is not None:
        return None
    transposed = head.weight.t().contiguous()  # (C, vocab)
    return lambda x: x @ transposed


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
) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, (B,) long, once per step. A row that stops yields its stop token on that
    step (so a caller can tell which one ended it) and -1 on every later step.

    use_cache: None means "when the model supports it" (tinylm's GPT does; any model whose forward takes
    idx and returns (logits, loss) works without). `vocab_limit` excludes ids at or above it: the padding
    rows of an embedding rounded up to a multiple of 64 are not tokens.
    """
    _check_lengths(max_new_tokens, min_new_tokens)
    block_size = model.config.block_size
    keep = block_size // 2 if keep is None else keep
    if not 1 <= keep <= block_size:
        raise ValueError(f"keep must be between 1 and block_size ({block_size}), got {keep}")
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token (start from the end-of-text token to begin afresh)")
    supports_cache = isinstance(model, GPT)
    if use_cache and not supports_cache:
        raise ValueError(f"{type(model).__name__} takes no key/value cache; use use_cache=False")
    use_cache = supports_cache if use_cache is None else use_cache
    device = model_device(model)
    longest = max(len(p) for p in prompts)
    # Room for the prompt and the new tokens, but never more than two contexts' worth of them: see `Memory` above.
    tokens, pad = _left_padded(prompts, longest + min(max_new_tokens, 2 * block_size), device)
    if not supports_cache and int(pad.max()) > 0:
        raise ValueError(f"{type(model).__name__} takes no padding mask, so its prompts must have equal lengths")
    vocab_size = model.config.vocab_size
    if int(tokens.max()) >= vocab_size or int(tokens.min()) < 0:
        raise ValueError(f"prompt token ids must be in [0, {vocab_size}), the model's vocabulary")
    batch_size = tokens.size(0)
    stops = torch.as_tensor(list(stop_tokens), dtype=torch.long, device=device)
    if len(stops) and not (0 <= int(stops.min()) and int(stops.max()) < vocab_size):
        raise ValueError(f"stop token ids must be in [0, {vocab_size}), the model's vocabulary; "
                         f"got {list(stop_tokens)}")
    seen = None
    if sampling.repetition_penalty != 1:
        seen = torch.zeros(batch_size, vocab_size, dtype=torch.bool, device=device)  # (B, V): in the sequence yet?
        for row, prompt in enumerate(prompts):
            seen[row, torch.as_tensor(prompt, dtype=torch.long, device=device)] = True

    generator = sampling.generator(device)
    cache = KVCache(model.config, batch_size) if supports_cache else None
    head = _decoding_head(model) if supports_cache else None
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    try:
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
                logits = model.decode_step(tokens[:, cached_until:length], cache, head)  # the prompt, then one token
                cached_until = length
            logits = logits.float()
            if vocab_limit is not None and vocab_limit < logits.size(-1):
                logits[:, vocab_limit:] = float("-inf")
            if step < min_new_tokens and len(stops):
                logits[:, stops] = float("-inf")
            next_id = choose_next(logits, sampling, generator, seen)  # (B,)
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
    finally:
        model.train(was_training)


def generate(model, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0, top_k: int | None = None,
             top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = None, **options) -> torch.Tensor:
    """idx (B, T) -> (B, T + max_new_tokens): the prompts followed by their continuations.

    `options` are `decode`'s: use_cache, keep, vocab_limit.
    """
    sampling = Sampling(temperature, top_k, top_p, repetition_penalty, seed)
    new = list(decode(model, idx.tolist(), max_new_tokens, sampling, **options))
    if not new:
        return idx
    return torch.cat([idx, torch.stack(new, dim=1).to(idx.device)], dim=1)


def generate_batch(model, prompts: Sequence[Sequence[int]], max_new_tokens: int, *, stop_tokens: Sequence[int] = (),
                   min_new_tokens: int = 0, temperature: float = 1.0, top_k: int | None = None, top_p: float = 1.0,
                   repetition_penalty: float = 1.0, seed: int | None = None, **options) -> list[list[int]]:
    """Prompts of any lengths -> each one's new tokens, up to its stop token (excluded) or max_new_tokens."""
    sampling = Sampling(temperature, top_k, top_p, repetition_penalty, seed)
    stops = set(stop_tokens)  # a stop token in a row's output is the one that ended it: left out
    continuations: list[list[int]] = [[] for _ in prompts]
    for next_ids in decode(model, prompts, max_new_tokens, sampling, stop_tokens=stop_tokens,
                           min_new_tokens=min_new_tokens, **options):
        for row, token in enumerate(next_ids.tolist()):
            if token >= 0 and token not in stops:
                continuations[row].append(token)
    return continuations


def _prompt_ids(tokenizer, prompt: str) -> list[int]:
    """A prompt as the model saw text in training.

    SentencePiece models (Llama, llama2.c) were trained on documents that open with BOS, so every prompt
    does too. Otherwise an empty prompt starts from the end-of-text token (BPE) or id 0 (characters).
    """
    bos = getattr(tokenizer, "bos_token", None)
    if bos is not None:
        return [bos, *tokenizer.encode(prompt)]
    return tokenizer.encode(prompt) or [getattr(tokenizer, "eot_token", 0)]


def _default_stop_tokens(tokenizer) -> tuple[int, ...]:
    eot = getattr(tokenizer, "eot_token", None)
    return () if eot is None else (eot,)


def _held_back(text: str, stop: Sequence[str]) -> int:
    """How many characters at the end of text could be the beginning of a stop string."""
    for size in range(min(len(text), max(map(len, stop), default=1) - 1), 0, -1):
        if any(s.startswith(text[-size:]) for s in stop):
            return size
    return 0


class TextStream:
    """Iterate over it for the continuation's text, piece by piece; `new_ids` holds the tokens generated so far.

    Once it has ended, `stop_reason` says why: "stop_string", "stop_token", "max_new_tokens" (the length limit),
    or "closed" (the reader stopped early); `stopped_at` holds the stop string or the stop token's text, and
    `stop_description` says it in words, e.g. "stopped at <|endoftext|>".

    The model is in eval mode while the stream runs. Leaving the loop early (`break`, an exception) or
    calling `close()` ends the generation and puts the model back in the mode it had, at once.
    """

    def __init__(self, model, tokenizer, prompt: str | Sequence[int], max_new_tokens: int, stop: Sequence[str],
                 stop_tokens: Sequence[int] | None, min_new_tokens: int, sampling: Sampling, options: dict):
        _check_lengths(max_new_tokens, min_new_tokens)
        if isinstance(stop, str):
            stop = (stop,)
        if any(not s for s in stop):
            raise ValueError("stop strings must not be empty")
        self.stop = tuple(stop)
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.new_ids: list[int] = []
        self.stop_reason: str | None = None
        self.stopped_at: str | None = None
        stop_tokens = _default_stop_tokens(tokenizer) if stop_tokens is None else stop_tokens
        self._stop_tokens = {int(t) for t in stop_tokens}
        prompt_ids = _prompt_ids(tokenizer, prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
        self._steps = decode(model, [prompt_ids], max_new_tokens, sampling,
                             stop_tokens=stop_tokens, min_new_tokens=min_new_tokens,
                             vocab_limit=tokenizer.vocab_size, **options)

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self._pieces()
        finally:  # also when the loop that reads the stream stops early: the model's training mode comes back now
            self.close()

    def close(self) -> None:
        """Stop generating and restore the model's training mode (what stopping early or finishing does)."""
        self._steps.close()
        if self.stop_reason is None:
            self.stop_reason = "closed"

    @property
    def stop_description(self) -> str:
        """Why the text ended, in words."""
        return {
            None: "still generating",
            "stop_token": f"stopped at {self.stopped_at}",
            "stop_string": f"stopped before the stop string {self.stopped_at!r}",
            "max_new_tokens": f"stopped at the length limit, max_new_tokens={self.max_new_tokens}",
            "closed": f"stopped early after {len(self.new_ids)} tokens: the reader closed the stream",
        }[self.stop_reason]

    def _first_stop(self, text: str, start: int) -> int | None:
        """Where the earliest stop string begins in text[start:] (recorded as the reason), or None."""
        found = [(i, s) for s in self.stop if (i := text.find(s, start)) >= 0]
        if not found:
            return None
        position, self.stopped_at = min(found)
        self.stop_reason = "stop_string"
        return position

    def _pieces(self) -> Iterator[str]:
        emitted = 0  # characters of the decoded continuation already yielded
        for next_ids in self._steps:
            token = int(next_ids[0])
            if token in self._stop_tokens:
                self.stop_reason, self.stopped_at = "stop_token", self.tokenizer.decode([token])
                break
            self.new_ids.append(token)
            # Decode everything so far: a character split over two BPE tokens decodes only once complete.
            text = self.tokenizer.decode(self.new_ids)
            if text.endswith("\ufffd"):
                continue
            stop_at = self._first_stop(text, emitted)
            if stop_at is not None:
                if stop_at > emitted:
                    yield text[emitted:stop_at]
                return
            ready = len(text) - _held_back(text, self.stop)
            if ready > emitted:
                yield text[emitted:ready]
                emitted = ready
        else:
            self.stop_reason = "max_new_tokens"
        # What was held back, or left undecoded mid-character; a stop string completed there still ends the text.
        text = self.tokenizer.decode(self.new_ids)
        stop_at = self._first_stop(text, emitted)
        end = len(text) if stop_at is None else stop_at
        if end > emitted:
            yield text[emitted:end]


def stream(model, tokenizer, prompt: str | Sequence[int], max_new_tokens: int = 200, *, stop: Sequence[str] = (),
           stop_tokens: Sequence[int] | None = None, min_new_tokens: int = 0, temperature: float = 1.0,
           top_k: int | None = None, top_p: float = 1.0, repetition_penalty: float = 1.0, seed: int | None = None,
           **options) -> TextStream:
    """The continuation of `prompt` as text, piece by piece, as it is generated.

    `prompt` is text, or token ids as they are (e.g. a chat template's, with its special tokens).
    stop_tokens=None stops at the tokenizer's end-of-text token when it has one (pass () to run on).
    `options` are `decode`'s (use_cache, keep). Print it with
    `for piece in stream(...): print(piece, end="", flush=True)`, in a notebook or a terminal.
    """
    sampling = Sampling(temperature, top_k, top_p, repetition_penalty, seed)
    return TextStream(model, tokenizer, prompt, max_new_tokens, stop, stop_tokens, min_new_tokens, sampling, options)


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, **options) -> str:
    """Prompt text in, prompt + continuation out; `options` are `stream`'s."""
    return prompt + "".join(stream(model, tokenizer, prompt, max_new_tokens, **options))
