"""Sampling groups of completions with the KV cache, scoring them, the greedy accuracy and pass@k on problems.

A rollout is the data of one GRPO step: for each of P problems, G completions sampled from the policy at
the same prompt, each scored by the task's program. The sequences come back as one right-padded (P·G, T)
batch with a mask of the positions that predict completion tokens (what the policy gradient trains), the
completion ends with the task's stop token when the model produced it (so the model learns to stop). The task
says how a prompt is encoded and where a completion stops (tinylm.posttrain.grpo.tasks); a completion is cut where
prompt and completion would no longer fit the model's context, so that the policy scores it in one pass.
`pass_at_k` is the unbiased estimate of Chen et al. (2021, arXiv:2107.03374) from n samples per problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...generate.decode import decode
from ...generate.sampling import Sampling
from ...runtime import model_device


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


def complete(model, tokenizer, task, prompts: list[list[int]], max_new_tokens: int,
             sampling: Sampling) -> list[list[int]]:
    """Each prompt's new ids, up to and including the task's stop token when one was sampled, and never past the
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


def sample_groups(model, tokenizer, task, problems: list, group_size: int, max_new_tokens: int,
                  temperature: float = 1.0, seed: int | None = None) -> Rollout:
    """G sampled completions for each problem, scored; sampling is reproducible for a given seed."""
    repeated = [p for p in problems for _ in range(group_size)]
    prompts = [task.prompt_ids(tokenizer, p) for p in repeated]
    new = complete(model, tokenizer, task, prompts, max_new_tokens, Sampling(temperature=temperature, seed=seed))
    completions = [tokenizer.decode(ids) for ids in new]
    scores = task.score_completions(tokenizer, repeated, new)
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


def greedy_completions(model, tokenizer, task, problems: list, max_new_tokens: int,
                       batch_size: int = 256) -> list[list[int]]:
    """The greedy completion of each problem, as ids (the stop token included when it came)."""
    new = []
    for start in range(0, len(problems), batch_size):
        prompts = [task.prompt_ids(tokenizer, p) for p in problems[start : start + batch_size]]
        new += complete(model, tokenizer, task, prompts, max_new_tokens, Sampling(temperature=0))
    return new


def greedy_accuracy(model, tokenizer, task, problems: list, max_new_tokens: int,
                    batch_size: int = 256) -> tuple[float, float]:
    """(share correct, share well-formed) of greedy completions of `problems`."""
    new = greedy_completions(model, tokenizer, task, problems, max_new_tokens, batch_size)
    scores = task.score_completions(tokenizer, problems, new)
    return sum(s.correct for s in scores) / len(problems), sum(s.well_formed for s in scores) / len(problems)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k completions drawn without replacement from n, of which c are correct, is
    correct: 1 − C(n−c, k) / C(n, k), as a product that never forms the large binomials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def sampled_pass_at(model, tokenizer, task, problems: list, samples: int, ks: tuple[int, ...], max_new_tokens: int,
                    temperature: float = 1.0, seed: int = 0, batch_size: int = 256) -> dict[int, float]:
    """{k: the mean over problems of pass@k}, from `samples` completions per problem at `temperature`, each counted
    correct as the task scores it."""
    per_batch = max(1, batch_size // samples)
    correct = []
    for index, start in enumerate(range(0, len(problems), per_batch)):
        rollout = sample_groups(model, tokenizer, task, problems[start : start + per_batch], samples, max_new_tokens,
                                temperature=temperature, seed=seed * 1_000_003 + index)
        correct += rollout.correct.sum(dim=1).tolist()
    return {k: sum(pass_at_k(samples, int(c), k) for c in correct) / len(problems) for k in ks}
