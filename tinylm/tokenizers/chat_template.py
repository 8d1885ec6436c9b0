"""Chat tokens and the chat template: how a conversation becomes token ids, and which of them the model learns.

A conversation is one sequence in ChatML's layout, `<|im_start|>role\\ntext<|im_end|>\\n` per message, whose markers
are special tokens that encoding text never produces, so a user who types "<|im_end|>" cannot close a turn.
`ChatTemplate.render` also says which ids are an answer (an assistant's text and its closing `<|im_end|>`): the
tokens fine-tuning puts its loss on, and learning `<|im_end|>` is what makes the model stop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError
from .gpt2 import CHAT_SPECIAL_TOKENS, BPETokenizer, TrimmedBPETokenizer
from .hf_bpe import TrainedBPETokenizer
from .pretrained import PretrainedTokenizer

ROLES = ("system", "user", "assistant")
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"


class ChatFormatError(InputError):
    """A conversation or tokenizer the chat template cannot use; the message says what to change."""


class ContextOverflow(InputError):
    """A message too long for the model's context, even with every earlier turn dropped."""


def default_system_prompt(tokenizer) -> str:
    """The system prompt a conversation gets unless one is given: a published model's own, else the course's."""
    return getattr(tokenizer, "system_prompt", None) or DEFAULT_SYSTEM_PROMPT


def chat_token_ids(tokenizer) -> dict[str, int] | None:
    """The ids of <|im_start|>, <|im_end|> and <|pad|> in this tokenizer, or None if it lacks any of them."""
    if isinstance(tokenizer, BPETokenizer):
        return dict(CHAT_SPECIAL_TOKENS) if tokenizer.encoding_name == "gpt2-chat" else None
    if isinstance(tokenizer, TrimmedBPETokenizer):
        if tokenizer.base.encoding_name != "gpt2-chat":
            return None
        ids = {name: int(tokenizer.compact(gpt2_id)) for name, gpt2_id in CHAT_SPECIAL_TOKENS.items()}
        return None if tokenizer.unk_id in ids.values() else ids
    if isinstance(tokenizer, TrainedBPETokenizer):
        ids = {name: tokenizer.token_id(name) for name in CHAT_SPECIAL_TOKENS}
        return None if None in ids.values() else ids
    if isinstance(tokenizer, PretrainedTokenizer) and tokenizer.chatml:
        ids = {name: tokenizer.token_id(name) for name in (IM_START, IM_END)}
        # a published model pads with its own padding token, often <|im_end|> itself, else with <|im_end|>
        return None if None in ids.values() else {**ids, PAD: ids[IM_END] if tokenizer.pad_id is None
                                                  else tokenizer.pad_id}
    return None


@dataclass(frozen=True)
class RenderedChat:
    """A conversation as token ids, and for each id whether it is answer text the model should learn."""

    ids: list[int]
    is_answer: list[bool]

    def __len__(self) -> int:
        return len(self.ids)


class ChatTemplate:
    """ChatML rendering with the chat tokens of `tokenizer` (see `add_chat_tokens` for one without them)."""

    def __init__(self, tokenizer):
        ids = chat_token_ids(tokenizer)
        if ids is None:
            raise ChatFormatError("this tokenizer has no <|im_start|>/<|im_end|> tokens; add them first "
                                  "(tinylm.posttrain.vocab.add_chat_tokens(model, tokenizer))")
        self.tokenizer = tokenizer
        self.im_start, self.im_end, self.pad = ids[IM_START], ids[IM_END], ids[PAD]
        self._headers = {role: tokenizer.encode(f"{role}\n") for role in ROLES}
        self._newline = tokenizer.encode("\n")
        eot, unk = getattr(tokenizer, "eot_token", None), getattr(tokenizer, "unk_id", None)
        # <|im_end|> ends an answer. A model still learning may instead open the next turn with <|im_start|>, or
        # end the document with a base model's end-of-text token: either ends the answer too, and none is shown.
        has_eot = eot is not None and eot != unk
        self.stop_tokens = (self.im_end, self.im_start, eot) if has_eot else (self.im_end, self.im_start)
        # Ids that are no text of a reply: <|pad|>, and a trimmed vocabulary's <unk> (every dropped GPT-2 token at
        # once). A small model may still give them probability; a reply never draws them.
        padding = () if self.pad in self.stop_tokens else (self.pad,)  # a model that pads with <|im_end|> stops on it
        self.not_text = padding if unk is None else (*padding, unk)

    def render(self, messages: list[dict]) -> RenderedChat:
        """Every message as `<|im_start|>role\\n content <|im_end|>\\n`; the answer tokens are an assistant's
        content and its <|im_end|>."""
        check_messages(messages)
        ids, is_answer = [], []
        for message in messages:
            answer = message["role"] == "assistant"
            head = [self.im_start, *self._headers[message["role"]]]
            body = [*self.tokenizer.encode(message["content"]), self.im_end]
            ids += head + body + self._newline
            is_answer += [False] * len(head) + [answer] * len(body) + [False] * len(self._newline)
        return RenderedChat(ids, is_answer)

    def render_prompt(self, messages: list[dict]) -> list[int]:
        """The ids a reply is generated after: the conversation (ending with a user turn), then
        `<|im_start|>assistant\\n`."""
        if not messages or messages[-1].get("role") != "user":
            raise ChatFormatError("a prompt for a reply must end with a user message")
        return self.render(messages).ids + [self.im_start, *self._headers["assistant"]]


def check_messages(messages: list[dict]) -> None:
    """The rule every conversation follows: an optional system message first, then user and assistant in turn,
    starting with user; each message a dict with a known role and string content."""
    if not isinstance(messages, list) or not messages:
        raise ChatFormatError("a conversation is a non-empty list of {'role': ..., 'content': ...} messages")
    expected = "user"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            raise ChatFormatError(f"message {index} must be a dict with string 'content', got {message!r:.80}")
        role = message.get("role")
        if role not in ROLES:
            raise ChatFormatError(f"message {index} has role {role!r}; roles are {', '.join(ROLES)}")
        if role == "system":
            if index != 0:
                raise ChatFormatError(f"message {index} is a system message; only the first message may be one")
            continue
        if role != expected:
            raise ChatFormatError(f"message {index} is from the {role}, but the {expected} speaks next "
                                  "(turns alternate user, assistant, user, ...)")
        expected = "assistant" if role == "user" else "user"
