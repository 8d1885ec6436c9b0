"""Sampling text from a trained model, one token at a time.

Each step runs the model on the last `block_size` tokens (a longer prompt is cropped to its end,
as the model cannot see further back), turns the logits of the final position into probabilities,
and draws the next token. Temperature divides the logits (below 1: sharper, above 1: flatter;
0 means always take the most likely token); top-k keeps only the k most likely tokens. A seed
makes a sample repeatable without touching the global random state.
"""

from __future__ import annotations

import torch

from .runtime import model_device


def _check_sampling_args(temperature: float, top_k: int | None) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 means greedy), got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be at least 1 (or None for no limit), got {top_k}")


@torch.no_grad()
def generate(
    model,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
    vocab_limit: int | None = None,
) -> torch.Tensor:
    """idx (B, T) -> (B, T + max_new_tokens): the prompt followed by the sampled continuation.

    `vocab_limit` excludes ids at or above it: the padding rows of an embedding rounded up to a
    multiple of 64 are not tokens.
    """
    _check_sampling_args(temperature, top_k)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    was_training = model.training
    model.eval()
    block_size = model.config.block_size
    for _ in range(max_new_tokens):
        context = idx[:, -block_size:]  # (B, <=block_size)
        logits, _ = model(context)
        logits = logits[:, -1, :].float()  # (B, vocab): only the last position predicts the next token
        if vocab_limit is not None:
            logits[:, vocab_limit:] = float("-inf")
        if temperature == 0:
            next_id = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None and top_k < logits.size(-1):
                best, best_ids = torch.topk(logits, top_k)  # (B, k) each; ties resolved so exactly k survive
                logits = torch.full_like(logits, float("-inf")).scatter(-1, best_ids, best)
            probs = torch.softmax(logits, dim=-1)
            next_id = torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)
        idx = torch.cat([idx, next_id], dim=1)
    model.train(was_training)
    return idx


def generate_text(model, tokenizer, prompt: str, max_new_tokens: int = 200, **sampling) -> str:
    """Prompt text in, prompt + continuation out. An empty prompt starts from the end-of-text token (BPE) or id 0."""
    device = model_device(model)
    ids = tokenizer.encode(prompt) or [getattr(tokenizer, "eot_token", 0)]
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    out = generate(model, idx, max_new_tokens, vocab_limit=tokenizer.vocab_size, **sampling)
    return tokenizer.decode(out[0].tolist())
