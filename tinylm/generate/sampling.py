"""Turning the next-token logits into a choice: the samplers, each a small function that composes.

`choose_next` applies them in the order Hugging Face's `generate` uses: repetition penalty, temperature, top-k,
top-p, then a draw from the softmax of what is left. Filters set removed logits to -inf rather than renormalising by
hand: softmax renormalises. A seed draws through a `torch.Generator` of its own, so that a sample is repeatable
without touching the global random state. `Sampling` holds the settings, their help beside them (tinylm.settings).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..settings import option


@dataclass(frozen=True)
class Sampling:
    """The sampler's settings, declared once: the library's defaults and the flags of sample, chat and serve."""

    temperature: float = option("0 means greedy", 1.0, metavar="T", type=float)
    top_k: int | None = option("sample among the k likeliest tokens (default: all)", metavar="K", minimum=1)
    top_p: float = option("sample the likeliest tokens making up p", 1.0, metavar="P", type=float)
    repetition_penalty: float = option("above 1 discourages repeated tokens", 1.0, metavar="R", type=float)
    seed: int | None = option(None)

    def __post_init__(self):
        if not self.temperature >= 0:  # also catches NaN
            raise InputError(f"temperature must be >= 0 (0 means greedy), got {self.temperature}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or self.top_k < 1):
            raise InputError(f"top_k must be at least 1 (or None for no limit), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1] (1 keeps every token), got {self.top_p}")
        if not self.repetition_penalty > 0:
            raise InputError(f"repetition_penalty must be > 0 (1 means no penalty, 1.1-1.3 is typical), "
                             f"got {self.repetition_penalty}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def generator(self, device: torch.device) -> torch.Generator | None:
        return None if self.seed is None else torch.Generator(device=device).manual_seed(self.seed)


def sampling_and_options(options: dict) -> tuple[Sampling, dict]:
    """Keyword arguments -> (the sampler's settings among them, the others): the settings by name (temperature=0.8,
    top_k=40, as the notebooks write them), or as one value (sampling=Sampling(...)) that names override."""
    names = {f.name for f in dataclasses.fields(Sampling)}
    named = {name: value for name, value in options.items() if name in names}
    others = {name: value for name, value in options.items() if name not in names and name != "sampling"}
    return dataclasses.replace(options.get("sampling", Sampling()), **named), others


def sampling_only(options: dict) -> Sampling:
    """The sampler's settings among keyword arguments (`sampling_and_options`), a TypeError for any other keyword."""
    sampling, others = sampling_and_options(options)
    if others:
        raise TypeError(f"not a sampler setting: {', '.join(sorted(others))}")
    return sampling


def penalize_repetition(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """logits (B, V); seen (B, V) bool, True for tokens already in each row's sequence. A seen token's logit is
    divided by the penalty when positive and multiplied when negative, so both signs become less likely. CTRL
    (Keskar et al., 2019) divides every seen token's logit, which makes a negative one more likely; the sign rule is
    Hugging Face transformers' fix (issue #2302, pull request #2303)."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def keep_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    if k >= logits.size(-1):
        return logits
    best, best_ids = torch.topk(logits, k)  # (B, k) each; ties resolved so exactly k survive
    return torch.full_like(logits, float("-inf")).scatter(-1, best_ids, best)


def keep_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the most likely tokens until their probabilities add up to p (the most likely one always stays)."""
    if p >= 1:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)  # (B, V) each
    probs = torch.softmax(sorted_logits, dim=-1)
    before = probs.cumsum(dim=-1) - probs  # probability mass of the tokens ranked above each one
    sorted_logits = sorted_logits.masked_fill(before >= p, float("-inf"))  # the set already reached p without it
    return torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)


def choose_next(logits: torch.Tensor, sampling: Sampling, generator: torch.Generator | None = None,
                seen: torch.Tensor | None = None) -> torch.Tensor:
    """logits (B, V) of the next position -> token ids (B,), in this order: the repetition penalty; temperature
    (below 1 sharpens the distribution, above 1 flattens it; 0 takes the argmax, and the filters have nothing to
    do); top-k (exactly k tokens, even when logits tie); top-p (the smallest set of most likely tokens whose
    probability reaches p); a draw from the softmax of what is left."""
    logits = logits.float()
    if sampling.repetition_penalty != 1 and seen is not None:
        logits = penalize_repetition(logits, seen, sampling.repetition_penalty)
    if sampling.greedy:
        return logits.argmax(dim=-1)
    logits = logits / sampling.temperature
    if sampling.top_k is not None:
        logits = keep_top_k(logits, sampling.top_k)
    logits = keep_top_p(logits, sampling.top_p)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)
