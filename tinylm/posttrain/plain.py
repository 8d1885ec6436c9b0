"""The fair baseline for chat fine-tuning: the base model asked in plain text, and scored as the chat model is.

A base model has never seen <|im_start|> or <|im_end|>. Asked in ChatML, it cannot end its reply, so "before SFT,
0% of the replies stop" says nothing about what it knows: the comparison flatters SFT. The baseline asks in a
shape that pretraining text does contain (FAQ pages, exercises and quizzes in FineWeb-Edu),

    Question: <the user's last turn>
    Answer: <answer>

and a reply ends where text ends in pretraining: at <|endoftext|> or at the first blank line. Its answer loss
counts the answer's tokens and the <|endoftext|> after it, as the chat format counts the answer and <|im_end|>;
the token counts differ a little (another tokenization of the prompt's end), so the loss is compared per token.
The system prompt is left out: the base has no use for it. A trimmed base vocabulary must hold the prompt's
tokens: `tinylm.posttrain.sft.run` adds PLAIN_PROMPT to the texts it is trimmed for.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..generate.decode import generate_batch
from ..tokenizers.chat_template import RenderedChat
from .replies import text_vocab_limit

PLAIN_PROMPT = "Question: {instruction}\nAnswer:"
BLANK_LINE = "\n\n"


def _instruction(messages: Sequence[dict]) -> str:
    return [m for m in messages if m["role"] == "user"][-1]["content"]


def plain_prompt_ids(tokenizer, prompt: Sequence[dict]) -> list[int]:
    """The ids of the plain prompt for a conversation up to its last user turn (what `prompts()` gives)."""
    return tokenizer.encode(PLAIN_PROMPT.format(instruction=_instruction(prompt)))


def render_plain(tokenizer, messages: Sequence[dict]) -> RenderedChat:
    """A conversation whose last message is the assistant's answer, as the plain prompt, " " + answer and
    <|endoftext|>; is_answer marks the answer and <|endoftext|>, the tokens the answer loss counts."""
    prompt = plain_prompt_ids(tokenizer, messages[:-1])
    answer = tokenizer.encode(" " + messages[-1]["content"]) + [tokenizer.eot_token]
    return RenderedChat(prompt + answer, [False] * len(prompt) + [True] * len(answer))


def plain_replies(model, tokenizer, prompts: Sequence[Sequence[dict]], max_new_tokens: int,
                  batch_size: int = 32) -> tuple[list[str], list[bool]]:
    """Greedy continuations of the plain prompts, never <unk> (`text_vocab_limit`): (each reply's text up to
    <|endoftext|> or its first blank line, whether it ended so within max_new_tokens)."""
    texts, stopped = [], []
    for start in range(0, len(prompts), batch_size):
        ids = [plain_prompt_ids(tokenizer, p) for p in prompts[start : start + batch_size]]
        for reply in generate_batch(model, ids, max_new_tokens, stop_tokens=(tokenizer.eot_token,),
                                    vocab_limit=text_vocab_limit(tokenizer), temperature=0.0):
            text = tokenizer.decode(reply)
            texts.append(text.split(BLANK_LINE)[0])
            stopped.append(len(reply) < max_new_tokens or BLANK_LINE in text)
    return texts, stopped
