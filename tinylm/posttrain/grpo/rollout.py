"""Sampling groups of completions with the KV cache, scoring them, and the greedy accuracy on problems.

A rollout is the data of one GRPO step: for each of P problems, G completions sampled from the policy at
the same prompt, each scored by the task's program. The sequences come back as one right-padded (P·G, T)
batch with a mask of the positions that predict completion tokens (what the policy gradient trains), the
completion ends with the task's stop character when the model produced it (so the model learns to stop).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...generate.decode import decode
from ...generate.sampling import Sampling
from ...runtime import model_device
from .tasks import END, Problem


@dataclass(frozen=True)
class Rollout:
    sequences: torch.Tensor  # (P·G, T) prompt + completion ids, right-padded with 0
    completion_mask: torch.Tensor  # (P·G, T-1) bool: position t predicts a completion token sequences[:, t+1]
    rewards: torch.Tensor  # (P, G)
    correct: torch.Tensor  # (P, G) bool
    well_formed: torch.Tensor  # (P, G) bool
    completions: list[str]  # P·G texts, problem-major

    @property
    def mean_length(self) -> float:
        return self.completion_mask.sum().item() / self.completion_mask.size(0)


def _complete(model, tokenizer, ids: list[list[int]], max_new_tokens: int, sampling: Sampling) -> list[list[int]]:
    """Each prompt's new ids, up to and including the stop character when one was sampled."""
    stop = tokenizer.encode(END)
    new: list[list[int]] = [[] for _ in ids]
    with torch.no_grad():
        for step_ids in decode(model, ids, max_new_tokens, sampling, stop_tokens=stop):
            for row, token in enumerate(step_ids.tolist()):
                if token >= 0:
                    new[row].append(token)
    return new


def sample_groups(model, tokenizer, task, problems: list[Problem], group_size: int, max_new_tokens: int,
                  temperature: float = 1.0, seed: int | None = None, format_weight: float = 0.1) -> Rollout:
    """G sampled completions for each problem, scored; sampling is reproducible for a given seed."""
    prompts = [tokenizer.encode(p.prompt) for p in problems for _ in range(group_size)]
    new = _complete(model, tokenizer, prompts, max_new_tokens, Sampling(temperature=temperature, seed=seed))
    completions = [tokenizer.decode(ids) for ids in new]
    scores = [task.score(problem, text, format_weight) for problem, text in
              zip((p for p in problems for _ in range(group_size)), completions)]
    rows = [prompt + ids for prompt, ids in zip(prompts, new)]
    width = max(len(r) for r in rows)
    sequences = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    for i, (prompt, row) in enumerate(zip(prompts, rows)):
        sequences[i, : len(row)] = torch.tensor(row)
        mask[i, len(prompt) - 1 : len(row) - 1] = True  # the last prompt position predicts the first new token
    shape = (len(problems), group_size)
    device = model_device(model)
    return Rollout(sequences=sequences.to(device), completion_mask=mask.to(device),
                   rewards=torch.tensor([s.reward for s in scores], device=device).view(shape),
                   correct=torch.tensor([s.correct for s in scores], device=device).view(shape),
                   well_formed=torch.tensor([s.well_formed for s in scores], device=device).view(shape),
                   completions=completions)


def greedy_accuracy(model, tokenizer, task, problems: list[Problem], max_new_tokens: int,
                      batch_size: int = 256) -> tuple[float, float]:
    """(share correct, share well-formed) of greedy completions of `problems`."""
    correct = well_formed = 0
    for start in range(0, len(problems), batch_size):
        chunk = problems[start : start + batch_size]
        ids = [tokenizer.encode(p.prompt) for p in chunk]
        new = _complete(model, tokenizer, ids, max_new_tokens, Sampling(temperature=0))
        for problem, ids in zip(chunk, new):
            score = task.score(problem, tokenizer.decode(ids))
            correct += score.correct
            well_formed += score.well_formed
    return correct / len(problems), well_formed / len(problems)
