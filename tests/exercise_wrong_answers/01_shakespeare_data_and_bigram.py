"""Notebook 1: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # softmax then log: exp overflows for large logits
    "test_cross_entropy_by_hand": """
def cross_entropy_by_hand(logits, targets):
    probs = logits.exp() / logits.exp().sum(dim=-1, keepdim=True)
    return -probs[torch.arange(len(targets)), targets].log().mean()
""",
    # the wrong normalisation: columns instead of rows
    "test_bigram_probs_from_counts": """
def bigram_probs_from_counts(ids, vocab_size, alpha=1.0):
    counts = torch.zeros(vocab_size, vocab_size)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1), accumulate=True)
    counts += alpha
    return counts / counts.sum(dim=0, keepdim=True)
""",
    # multiplies by the temperature instead of dividing
    "test_temperature_probs": """
def temperature_probs(logits, temperature):
    return F.softmax(logits * temperature, dim=-1)
""",
    # each row's entropy averaged without weighting rows by how often their character occurs
    "test_entropies": """
def entropies(ids, vocab_size):
    counts = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    counts.index_put_((ids[:-1], ids[1:]), torch.ones(len(ids) - 1, dtype=torch.float64), accumulate=True)
    p_next = counts.sum(dim=0) / counts.sum()
    h = -(p_next[p_next > 0] * p_next[p_next > 0].log()).sum().item()
    rows = counts.sum(dim=1) > 0
    p_given = counts[rows] / counts[rows].sum(dim=1, keepdim=True)
    per_row = -(p_given * p_given.clamp(min=1e-30).log()).sum(dim=1)
    return h, per_row.mean().item()
""",
}
