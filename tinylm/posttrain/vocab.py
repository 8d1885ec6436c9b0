"""Growing a pretrained model's vocabulary by the chat tokens, so that it can learn to read and end a turn.

New embedding rows start as the mean of the old token rows (a neutral guess, where a random row would be an
outlier the first steps must undo); a padded embedding already has room for them. With tied weights the output
head grows with the embedding. Logits over the old tokens do not change.
"""

from __future__ import annotations

import dataclasses

import torch

from ..model.gpt import GPT
from ..tokenizers.chat_template import ChatFormatError, chat_token_ids
from ..tokenizers.gpt2 import CHAT_SPECIAL_TOKENS, BPETokenizer, TrimmedBPETokenizer, padded_vocab_size
from ..tokenizers.hf_bpe import TrainedBPETokenizer


def with_chat_tokens(tokenizer) -> tuple[object, list[int | None]]:
    """(the tokenizer with the chat tokens, for each of its ids the old id it continues or None for a new token).

    GPT-2's BPE becomes "gpt2-chat" (ids unchanged, three added at the end); a trimmed vocabulary keeps its
    ids and gets the three before <unk>; a BPE trained on your text (bpe:N) gets them as special tokens at its end.
    Character and SentencePiece tokenizers have no chat encoding.
    """
    if chat_token_ids(tokenizer) is not None:
        return tokenizer, list(range(tokenizer.vocab_size))
    if isinstance(tokenizer, BPETokenizer):
        chat = BPETokenizer("gpt2-chat")
        return chat, [*range(tokenizer.vocab_size), *[None] * (chat.vocab_size - tokenizer.vocab_size)]
    if isinstance(tokenizer, TrimmedBPETokenizer):
        kept = [i for i in tokenizer.kept_ids if i not in CHAT_SPECIAL_TOKENS.values()]
        chat = TrimmedBPETokenizer(kept + list(CHAT_SPECIAL_TOKENS.values()), "gpt2-chat")
        old_compact = [int(tokenizer.compact(i)) for i in kept]
        return chat, [*old_compact, *[None] * len(CHAT_SPECIAL_TOKENS), tokenizer.unk_id]
    if isinstance(tokenizer, TrainedBPETokenizer):
        chat = tokenizer.with_chat_tokens(CHAT_SPECIAL_TOKENS)
        return chat, [*range(tokenizer.vocab_size), *[None] * (chat.vocab_size - tokenizer.vocab_size)]
    raise ChatFormatError(f"chat fine-tuning needs a BPE tokenizer (GPT-2's, plain or trimmed, or bpe:N); this "
                          f"model's is {tokenizer.to_dict().get('kind')!r}. Start from a tinystories, gpt2-124m, "
                          "GPT-2 or `train text --tokenizer bpe:N` model.")


def _grown(weight: torch.Tensor, sources: list[int | None], old_vocab: int, rows: int) -> torch.Tensor:
    """A (rows, C) matrix: row i copies weight[sources[i]], new tokens and new padding rows get the mean token row."""
    mean = weight[:old_vocab].mean(dim=0)
    out = mean.expand(rows, -1).clone()
    keep = min(rows, weight.size(0))
    out[:keep] = weight[:keep]  # padding rows past the vocabulary stay as they were where they exist
    for new_id, old_id in enumerate(sources):
        out[new_id] = mean if old_id is None else weight[old_id]
    return out


@torch.no_grad()
def add_chat_tokens(model: GPT, tokenizer) -> tuple[GPT, object]:
    """(model, tokenizer) ready for the chat template: the tokenizer with chat tokens, the model's rows to match.

    Returns the same objects when the tokenizer has the chat tokens already. Otherwise the embedding keeps
    its size when its padding has room for the new ids (their rows are set to the mean token row), and
    grows to the next multiple of 64 when it has not. A new GPT is returned in the old one's mode and place.
    """
    chat, sources = with_chat_tokens(tokenizer)
    if chat is tokenizer:
        return model, tokenizer
    config = model.config
    rows = config.vocab_size if chat.vocab_size <= config.vocab_size else padded_vocab_size(chat.vocab_size, 64)
    state = model.state_dict()
    state["transformer.wte.weight"] = _grown(state["transformer.wte.weight"], sources, tokenizer.vocab_size, rows)
    if config.tie_weights:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    else:
        state["lm_head.weight"] = _grown(state["lm_head.weight"], sources, tokenizer.vocab_size, rows)
    weight = model.transformer.wte.weight
    grown = GPT(dataclasses.replace(config, vocab_size=rows)).to(weight.device, weight.dtype)
    grown.load_state_dict(state)
    grown.train(model.training)
    return grown, chat
