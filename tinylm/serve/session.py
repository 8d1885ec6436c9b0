"""Talking to a chat model: a conversation that always fits the model's context.

A model sees at most block_size tokens, and the reply needs room too, so before each reply the oldest user/assistant
exchanges are dropped until the prompt plus `max_new_tokens` fits; the system prompt always stays. A message that
does not fit even alone is refused with the numbers, and the conversation is left as it was.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..errors import InputError
from ..generate.sampling import Sampling, sampling_and_options
from ..generate.stream import TextStream, stream
from ..settings import option
from ..tokenizers.chat_template import (
    DEFAULT_SYSTEM_PROMPT,
    ChatFormatError,
    ChatTemplate,
    ContextOverflow,
    chat_token_ids,
)


@dataclass(frozen=True)
class ChatOptions:
    """A chat's options beside the sampler's, declared once: the flags of python -m tinylm.chat and serve."""

    max_new_tokens: int | None = option(None)  # --max-new-tokens, which sample has too (tinylm/cli/flags.py)
    system: str | None = option("the system prompt ('' for none; default: an imported model's own, else 'You are a "
                                "helpful assistant.')", metavar="TEXT")
    calculator: bool = option("a calculator answers the model's <<48/2= with 24>> (a model fine-tuned on the "
                              "multistep or gsm8k task)", False)


class ChatSession:
    """A conversation with a chat model. `reply(text)` streams the answer and then adds both turns to `messages`."""

    def __init__(self, model, tokenizer, system_prompt: str | None = DEFAULT_SYSTEM_PROMPT,
                 max_new_tokens: int | None = None, **options):
        """`options`: the sampler's settings (temperature=0.7, ..., or sampling=...) and decode's (use_cache)."""
        if chat_token_ids(tokenizer) is None:
            raise ChatFormatError("this model's tokenizer has no chat tokens, so it was not fine-tuned for chat; "
                                  "fine-tune it first: python -m tinylm.sft --base CHECKPOINT --out DIR")
        self.model, self.template = model, ChatTemplate(tokenizer)
        block_size = model.config.block_size
        self.max_new_tokens = min(256, block_size // 2) if max_new_tokens is None else max_new_tokens
        if not 0 < self.max_new_tokens < block_size:
            raise InputError(f"max_new_tokens must be between 1 and {block_size - 1} (the context is {block_size})")
        self.sampling, self.options = sampling_and_options(options)
        self.system = [{"role": "system", "content": system_prompt}] if system_prompt else []
        self.messages: list[dict] = list(self.system)
        self.turns = 0

    def reset(self) -> None:
        self.messages = list(self.system)

    def with_history(self, history: list[dict]) -> "ChatSession":
        """A session with this one's model, options and system prompt, and `history` (user and assistant turns) as
        its conversation so far: what the web server answers each request with."""
        session = ChatSession(self.model, self.template.tokenizer, None, self.max_new_tokens, sampling=self.sampling,
                              **self.options)
        session.system, session.messages = self.system, [*self.system, *history]
        return session

    def fit_to_context(self, user_text: str) -> tuple[list[dict], list[int]]:
        """(messages, prompt ids) for a reply to user_text: the oldest exchanges dropped until it fits."""
        history = self.messages[len(self.system):]
        budget = self.model.config.block_size - self.max_new_tokens
        while True:
            messages = [*self.system, *history, {"role": "user", "content": user_text}]
            ids = self.template.render_prompt(messages)
            if len(ids) <= budget:
                return messages, ids
            if not history:
                raise ContextOverflow(
                    f"this message is too long: with the system prompt it takes {len(ids)} tokens, and a reply of "
                    f"up to {self.max_new_tokens} must fit too, in a context of {self.model.config.block_size}; "
                    "shorten it (or lower --max-new-tokens)")
            history = history[2:]  # one user/assistant exchange, the oldest

    def reply(self, user_text: str) -> Iterator[str]:
        """The reply's text, piece by piece; once it is complete the conversation holds the question and the answer.
        A message too long for the context raises ContextOverflow here, before anything is generated."""
        messages, ids = self.fit_to_context(user_text)
        return self.reply_to_fitted(messages, ids)

    def reply_to_prompt(self, ids: list[int], max_new_tokens: int, sampling: Sampling,
                        stop: Sequence[str] = ()) -> TextStream:
        """A reply to prompt ids (a rendered conversation) with `sampling`, as an API request asks: the template's stop
        tokens end it, and its non-text tokens are never drawn."""
        return stream(self.model, self.template.tokenizer, ids, max_new_tokens, stop=stop, sampling=sampling,
                      stop_tokens=self.template.stop_tokens, excluded_tokens=self.template.not_text, **self.options)

    def reply_to_fitted(self, messages: list[dict], ids: list[int]) -> Iterator[str]:
        """The reply to `fit_to_context`'s (messages, ids), piece by piece; at its end `messages` become the
        conversation. It stops at the template's stop tokens (<|im_end|>, or the <|im_start|> or end-of-text of a
        model that forgot to close its turn), which never show in the text; <|pad|> and a trimmed vocabulary's <unk>
        are never drawn, since they are no text."""
        seed = self.sampling.seed
        sampling = dataclasses.replace(self.sampling, seed=None if seed is None else seed + self.turns)
        pieces = self.reply_to_prompt(ids, self.max_new_tokens, sampling)
        text = ""
        for piece in pieces:
            text += piece
            yield piece
        self.turns += 1
        self.messages = [*messages, {"role": "assistant", "content": text.strip()}]
