"""Notebook 7: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # off by one: keeps the tokens whose running total, their own probability included, stays below p, so the
    # token that carries the mass over p is dropped
    "test_nucleus": """
def nucleus(logits, p):
    probs = torch.softmax(logits, dim=-1)
    order = probs.argsort(descending=True)
    mask = torch.zeros_like(probs, dtype=torch.bool)
    mask[order[probs[order].cumsum(0) < p]] = True
    return mask
""",
    # the keys counted, the values forgotten
    "test_kv_cache_bytes": """
def kv_cache_bytes(cfg, batch_size, dtype):
    values = cfg.n_layer * batch_size * cfg.block_size * cfg.n_embd
    return values * torch.tensor([], dtype=dtype).element_size()
""",
    # the generator seeded anew for every token, not once for the whole sample
    "test_sample_with_my_cache": """
def sample_with_my_cache(model, prompt_ids, new_tokens, temperature, top_k, seed):
    sampling = Sampling(temperature=temperature, top_k=top_k, seed=seed)
    logits, past = forward_with_cache(model, torch.tensor([prompt_ids], device=DEVICE), None)
    out = []
    for _ in range(new_tokens):
        token = int(choose_next(logits[:, -1], sampling, sampling.generator(DEVICE)))
        out.append(token)
        logits, past = forward_with_cache(model, torch.tensor([[token]], device=DEVICE), past)
    return out
""",
    # the prediction at T = 1: the softmax of the logits, not divided by the temperature
    "test_temperature_frequency": """
my_prediction = torch.softmax(logits, dim=-1).max().item()
""",
}
