"""Notebook 13: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # without biases, still counts the final LayerNorm's shift: a gain and a shift either way
    "test_my_non_embedding_parameters": """
def my_non_embedding_parameters(n_layer, width, bias=True):
    weights = 12 * width * width
    biases = 9 * width if bias else 0
    norms = 2 * (2 if bias else 1) * width
    return n_layer * (weights + biases + norms) + 2 * width
""",
    # the trend of D_opt (slope 1 - a), not of D_opt / N_opt (slope 1 - 2a)
    "test_my_tokens_per_parameter": """
def my_tokens_per_parameter(budgets, n_opt):
    budgets, n_opt = np.asarray(budgets, float), np.asarray(n_opt, float)
    ratios = budgets / (6 * n_opt**2)
    u, v = np.log(budgets), np.log(budgets / (6 * n_opt))
    return ratios, float(((u - u.mean()) * (v - v.mean())).sum() / ((u - u.mean()) ** 2).sum())
""",
    # a fresh TrainConfig with the sweep's batch and warmup instead of `template`: the default rate, not the sweep's
    "test_a_skipped_size_lands_on_its_parabola": """
skipped = next(size for size in ladder if size.name == "2x40")
my_run = train_size(skipped, budgets[2], tinylm.TrainConfig(batch_size=sweep["batch_size"],
                                                            warmup_steps=sweep["warmup_steps"]),
                    data.train, data.val, device=DEVICE, seed=1)
""",
}
