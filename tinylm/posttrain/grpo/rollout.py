"""Groups of sampled completions, scored (a rollout), and pass@k.

A rollout is the data of one GRPO step: for each of P problems, G completions sampled from the policy at the same
prompt (tinylm.posttrain.replies.complete: cut where the task stops them and where the context ends), each scored
by the task. The sequences come back as one right-padded (P·G, T) batch with a mask of the positions that predict
completion tokens the policy sampled (what the policy gradient trains; a tool's tokens, written into the stream, are
not); a completion keeps its stop token, so the model learns to stop.
`pass_at_k` is the unbiased estimate of Chen et al. (2021, arXiv:2107.03374) from n samples per problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...generate.sampling import sampling_only
from ...runtime import model_device
from ..replies import complete


@dataclass(frozen=True)
class Rollout:
    sequences: torch.Tensor  # (P·G, T) prompt + completion ids, right-padded with 0
    completion_mask: torch.Tensor  # (P·G, T-1) bool: position t predicts a sampled completion token sequences[:, t+1]
    rewards: torch.Tensor  # (P, G)
    correct: torch.Tensor  # (P, G) bool
    well_formed: torch.Tensor  # (P, G) bool
    completions: list[str]  # P·G texts, problem-major

    @property
    def mean_length(self) -> float:
        return self.completion_mask.sum().item() / self.completion_mask.size(0)


def sample_groups(model, tokenizer, task, problems: list, group_size: int, **sampling) -> Rollout:
    """G sampled completions for each problem, scored; `sampling`: the sampler's settings (temperature=1.0, seed=0,
    ..., or sampling=Sampling(...)), reproducible for a given seed."""
    repeated = [p for p in problems for _ in range(group_size)]
    prompts = [task.prompt_ids(tokenizer, p) for p in repeated]
    new = complete(model, tokenizer, task, prompts, task.reply_tokens, sampling_only(sampling))
    completions = [tokenizer.decode(ids) for ids in new]
    scores = task.score_completions(tokenizer, repeated, new)
    rows = [prompt + ids for prompt, ids in zip(prompts, new)]
    width = max(len(r) for r in rows)
    sequences = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width - 1, dtype=torch.bool)
    tool = task.generation(tokenizer).get("tool")
    for i, (prompt, row) in enumerate(zip(prompts, rows)):
        sequences[i, : len(row)] = torch.tensor(row)
        mask[i, len(prompt) - 1 : len(row) - 1] = True  # the last prompt position predicts the first new token
        if tool is not None:  # a tool's tokens were not sampled: no gradient moves their probability
            mask[i, : len(row) - 1] &= ~torch.tensor(tool.written_by_tool(row)[1:])
    shape = (len(problems), group_size)
    device = model_device(model)
    return Rollout(sequences=sequences.to(device), completion_mask=mask.to(device),
                   rewards=torch.tensor([s.reward for s in scores], device=device).view(shape),
                   correct=torch.tensor([s.correct for s in scores], device=device).view(shape),
                   well_formed=torch.tensor([s.well_formed for s in scores], device=device).view(shape),
                   completions=completions)


def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k completions drawn without replacement from n, of which c are correct, is
    correct: 1 − C(n−c, k) / C(n, k), as a product that never forms the large binomials."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def sampled_correct(model, tokenizer, task, problems: list, samples: int, batch_size: int = 256,
                    **sampling) -> list[int]:
    """Per problem, in order, how many of `samples` completions the task scores correct; `sampling` as
    `sample_groups`'s (its seed, 0 by default, seeds each batch's)."""
    sampling = sampling_only(sampling)
    per_batch, seed = max(1, batch_size // samples), sampling.seed or 0
    correct = []
    for index, start in enumerate(range(0, len(problems), per_batch)):
        rollout = sample_groups(model, tokenizer, task, problems[start : start + per_batch], samples,
                                sampling=sampling, seed=seed * 1_000_003 + index)
        correct += rollout.correct.sum(dim=1).tolist()
    return [int(c) for c in correct]


def pass_at_rates(correct: list[int], samples: int, ks: tuple[int, ...]) -> dict[int, float]:
    """{k: the mean over problems of pass@k}, from each problem's count of correct completions of `samples`."""
    return {k: sum(pass_at_k(samples, c, k) for c in correct) / len(correct) for k in ks}

