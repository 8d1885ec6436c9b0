"""Text as it is generated: tokens decoded into text as they come, held back at a possible stop string, and the
reason the text ended (a stop token, a stop string, or the length limit).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from ..errors import InputError
from .decode import _check_lengths, decode
from .sampling import sampling_and_options


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

    def __init__(self, tokenizer, steps: Iterator, stop: Sequence[str], stop_tokens: Sequence[int],
                 max_new_tokens: int):
        """steps: `decode`'s of one prompt, which stops at `stop_tokens` or after `max_new_tokens`."""
        if isinstance(stop, str):
            stop = (stop,)
        if any(not s for s in stop):
            raise InputError("stop strings must not be empty")
        self.stop = tuple(stop)
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.new_ids: list[int] = []
        self._context = self._decoded = 0  # new_ids[:_decoded] are decoded; [_context:_decoded] the last piece
        self.stop_reason: str | None = None
        self.stopped_at: str | None = None
        self._stop_tokens = {int(t) for t in stop_tokens}
        self._steps = steps

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

    def _first_stop(self, text: str) -> int | None:
        """Where the earliest stop string begins in text (recorded as the reason), or None."""
        found = [(i, s) for s in self.stop if (i := text.find(s)) >= 0]
        if not found:
            return None
        position, self.stopped_at = min(found)
        self.stop_reason = "stop_string"
        return position

    def _new_text(self, final: bool = False) -> str | None:
        """The text the tokens since the last call add; None while it ends mid-character (unless `final`), as
        when a byte-level BPE token carries only the first bytes of an emoji.

        Only the tail is decoded, not everything so far (which would cost quadratic time in a long stream):
        the tokens since the last complete piece, after one token of context whose text is known. That context
        starts the decoded window at the same place as the known text, so whatever the tokenizer does at the
        start of a text (SentencePiece's leading space) cancels out, and a complete piece ends on a whole
        character, so the bytes that follow decode on their own.
        """
        window = self.tokenizer.decode(self.new_ids[self._context:])
        if window.endswith("\ufffd") and not final:
            return None
        known = self.tokenizer.decode(self.new_ids[self._context:self._decoded]) if self._decoded else ""
        self._context, self._decoded = self._decoded, len(self.new_ids)
        return window[len(known):]

    def _pieces(self) -> Iterator[str]:
        # Decoded text not yielded yet: whatever could begin a stop string (and, for a moment, the newest text).
        pending = ""
        for next_ids in self._steps:
            token = int(next_ids[0])
            if token in self._stop_tokens:
                self.stop_reason, self.stopped_at = "stop_token", self.tokenizer.decode([token])
                break
            self.new_ids.append(token)
            text = self._new_text()
            if text is None:  # a character split over tokens decodes only once complete
                continue
            pending += text
            stop_at = self._first_stop(pending)
            if stop_at is not None:
                if stop_at > 0:
                    yield pending[:stop_at]
                return
            ready = len(pending) - _held_back(pending, self.stop)
            if ready > 0:
                yield pending[:ready]
                pending = pending[ready:]
        else:
            self.stop_reason = "max_new_tokens"
        # What was held back, or left undecoded mid-character; a stop string completed there still ends the text.
        pending += self._new_text(final=True)
        stop_at = self._first_stop(pending)
        end = len(pending) if stop_at is None else stop_at
        if end > 0:
            yield pending[:end]


def stream(model, tokenizer, prompt: str | Sequence[int], max_new_tokens: int = 200, *, stop: Sequence[str] = (),
           stop_tokens: Sequence[int] | None = None, **options) -> TextStream:
    """The continuation of `prompt` as text, piece by piece, as it is generated.

    `prompt` is text, or token ids as they are (e.g. a chat template's, with its special tokens).
    stop_tokens=None stops at the tokenizer's end-of-text token when it has one (pass () to run on).
    `options`: the sampler's settings, as `python -m tinylm.sample` has them as options (temperature=0.8, top_k=40,
    ..., or sampling=Sampling(...)), and `decode`'s keywords (min_new_tokens, use_cache, keep, ...). Print it with
    `for piece in stream(...): print(piece, end="", flush=True)`, in a notebook or a terminal.
    """
    sampling, options = sampling_and_options(options)
    _check_lengths(max_new_tokens, options.get("min_new_tokens", 0))  # now: decode's own checks wait for a read
    stop_tokens = _default_stop_tokens(tokenizer) if stop_tokens is None else stop_tokens
    prompt_ids = _prompt_ids(tokenizer, prompt) if isinstance(prompt, str) else [int(i) for i in prompt]
    steps = decode(model, [prompt_ids], max_new_tokens, sampling, stop_tokens=stop_tokens,
                   vocab_limit=tokenizer.vocab_size, **options)
    return TextStream(tokenizer, steps, stop, stop_tokens, max_new_tokens)


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, **options) -> str:
    """Prompt text in, prompt + continuation out; `options` are `stream`'s."""
    return prompt + "".join(stream(model, tokenizer, prompt, max_new_tokens, **options))
