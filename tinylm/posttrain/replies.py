"""Greedy replies of a chat model, and how SFT and DPO score them alike.

`chat_replies` answers each prompt greedily in ChatML until <|im_end|> or REPLY_TOKENS (a reply that ends within
them "stops"), never with a trimmed vocabulary's <unk> (`text_vocab_limit`); `tinylm.posttrain.plain` does the same
for a base model asked in plain text. `scored` measures replies against reference answers: the stop rate, each
reply's token F1 and ROUGE-L (tinylm.eval.overlap) and their means, and the first SHOWN_REPLIES for a report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ..errors import InputError
from ..eval.overlap import rouge_l, token_f1
from ..generate.decode import generate_batch
from ..tokenizers.chat_template import ChatTemplate

REPLY_TOKENS = 200  # a reply "stops" when <|im_end|> comes within this many tokens
SHOWN_REPLIES = 3  # prompts whose replies before and after training go into a run's report


def text_vocab_limit(tokenizer) -> int:
    """The ids a reply may use: all but a trimmed vocabulary's <unk>, its last id. <unk> stands for every dropped
    GPT-2 token at once, so a small base gives it a large probability (greedy decoding then writes nothing but
    <unk>), and it cannot become text."""
    unk_id = getattr(tokenizer, "unk_id", None)
    if unk_id is None:
        return tokenizer.vocab_size
    if unk_id != tokenizer.vocab_size - 1:
        raise InputError(f"<unk> is id {unk_id}, not the last of {tokenizer.vocab_size}: a limit cannot exclude it")
    return unk_id


def chat_replies(model, template: ChatTemplate, prompts: Sequence[list[dict]], max_new_tokens: int = REPLY_TOKENS,
                 batch_size: int = 32) -> tuple[list[str], list[bool]]:
    """(each greedy reply's text, whether it ended with <|im_end|> within max_new_tokens)."""
    replies = []
    for start in range(0, len(prompts), batch_size):
        ids = [template.render_prompt(p) for p in prompts[start : start + batch_size]]
        replies += generate_batch(model, ids, max_new_tokens, stop_tokens=(template.im_end,), temperature=0.0,
                                  vocab_limit=text_vocab_limit(template.tokenizer))
    return [template.tokenizer.decode(r) for r in replies], [len(r) < max_new_tokens for r in replies]


def scored(texts: list[str], stopped: list[bool], prompts: list[list[dict]], references: list[str],
           started: float) -> dict:
    """The stop rate, each reply's token F1 and ROUGE-L against its reference (and their means), the seconds since
    `started`, and the first SHOWN_REPLIES replies."""
    f1 = [token_f1(t, r) for t, r in zip(texts, references)]
    lcs = [rouge_l(t, r) for t, r in zip(texts, references)]
    return {"stop_rate": sum(stopped) / max(1, len(stopped)), "stopped": sum(stopped), "prompts": len(prompts),
            "token_f1": sum(f1) / max(1, len(f1)), "rouge_l": sum(lcs) / max(1, len(lcs)),
            "scores": {"token_f1": f1, "rouge_l": lcs}, "seconds": round(time.perf_counter() - started, 1),
            "replies": [{"prompt": p[-1]["content"], "reply": t} for p, t in zip(prompts[:SHOWN_REPLIES], texts)]}
