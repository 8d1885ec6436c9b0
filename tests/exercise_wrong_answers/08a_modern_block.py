"""Notebook 8a: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # eps added to the root instead of under it
    "test_my_rms_norm": """
def my_rms_norm(x, weight, eps):
    return x / (x.pow(2).mean(dim=-1, keepdim=True).sqrt() + eps) * weight
""",
    # counts every query head in the cache: grouped-query attention's saving left out
    "test_kv_bytes_per_token": """
def kv_bytes_per_token(cfg, bytes_per_number):
    return 2 * cfg.n_layer * cfg.n_head * cfg.head_size * bytes_per_number
""",
    # the track's recipe instead of arm_recipe: other steps and warmup than the lesson's two arms
    "test_ladder": """
ladder_runs = train_arms(ladder, SEEDS, recipe, train_tokens, data.val, device=DEVICE, tokenizer=data.tokenizer,
                         test_data=test_tokens)
""",
    # a clock without lifting the step limit: a run that reaches ARM_STEPS first stops there
    "test_equal_time": """
seconds = sum(run.elapsed for run in runs["Llama"]) / len(runs["Llama"])
equal_time_runs = train_arms(arms, SEEDS, dataclasses.replace(arm_recipe, max_seconds=seconds),
                             train_tokens, data.val, device=DEVICE, tokenizer=data.tokenizer, test_data=test_tokens)
""",
    # the frequencies' exponent without its 2: θ_j = base^(−j/hs), so the slow pairs turn too fast
    "test_rope_rotate_half": """
def rope_rotate_half(x, positions, base=10000.0):
    hs = x.size(-1)
    theta = base ** (-torch.arange(0, hs // 2, dtype=torch.float64) / hs)
    angles = torch.outer(positions.double(), theta)
    cos, sin = angles.cos().repeat(1, 2), angles.sin().repeat(1, 2)
    x1, x2 = x[..., : hs // 2], x[..., hs // 2 :]
    return (x * cos + torch.cat([-x2, x1], dim=-1) * sin).to(x.dtype)
""",
}
