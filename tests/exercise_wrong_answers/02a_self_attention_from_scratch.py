"""Notebook 2a: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # off by one: `distance <= window` lets each position see window + 1 positions
    "test_local_causal_attention": """
def local_causal_attention(q, k, v, window):
    T = q.size(-2)
    t = torch.arange(T, device=q.device)
    distance = t[:, None] - t[None, :]
    visible = (distance >= 0) & (distance <= window)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    return F.softmax(scores.masked_fill(~visible, float("-inf")), dim=-1) @ v
""",
    # the softmax over the wrong axis: the query's axis of size 1, so every weight is 1 and the values are summed
    "test_output_variance": """
def output_variance(head_size, scaled, T=16, n=4000, generator=None):
    q = torch.randn(n, 1, head_size, generator=generator)
    k = torch.randn(n, T, head_size, generator=generator)
    v = torch.randn(n, T, 1, generator=generator)
    scores = q @ k.transpose(-2, -1)
    if scaled:
        scores = scores / math.sqrt(head_size)
    return (F.softmax(scores, dim=-2) @ v).var().item()
""",
}
