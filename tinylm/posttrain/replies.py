"""Completions of a task's prompts, greedy or sampled, cut where the task stops them and where the context ends.

Every method writes its replies here, so a pass rate means the same under SFT, DPO and GRPO: prompt and completion
fit the model's context in one pass, a completion keeps its stop token when it came (the task reads whether it
ended), and a trimmed vocabulary's <unk> is never drawn (`text_vocab_limit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InputError
from ..generate.decode import decode
from ..generate.sampling import Sampling

SHOWN_REPLIES = 3  # replies a report keeps beside its figures


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


def complete(model, tokenizer, task, prompts: list[list[int]], max_new_tokens: int,
             sampling: Sampling) -> list[list[int]]:
    """Each prompt's new ids, up to and including the task's stop token when one was drawn, and never past the
    model's context: prompt + completion is at most block_size + 1 tokens (block_size positions predict)."""
    room = model.config.block_size + 1
    max_new_tokens = max(0, min(max_new_tokens, room - min(len(p) for p in prompts)))
    new: list[list[int]] = [[] for _ in prompts]
    with torch.no_grad():
        for step_ids in decode(model, prompts, max_new_tokens, sampling, **task.generation(tokenizer)):
            for row, token in enumerate(step_ids.tolist()):
                if token >= 0:
                    new[row].append(token)
    return [ids[: max(0, room - len(prompt))] for prompt, ids in zip(prompts, new)]


def greedy_completions(model, tokenizer, task, problems: Sequence, batch_size: int = 64) -> list[list[int]]:
    """The greedy completion of each problem, as ids (the stop token included when it came)."""
    new = []
    for start in range(0, len(problems), batch_size):
        prompts = [task.prompt_ids(tokenizer, p) for p in problems[start : start + batch_size]]
        new += complete(model, tokenizer, task, prompts, task.reply_tokens, Sampling(temperature=0))
    return new
