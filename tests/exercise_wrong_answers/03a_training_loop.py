"""Notebook 3a: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # the peak rate at every step: the warmup and the cosine's decay left out
    "test_decay_over_run": """
def decay_over_run(cfg):
    return (1 - cfg.learning_rate * cfg.weight_decay) ** cfg.max_steps
""",
    # each micro-batch weighed 1 / (number of micro-batches), whatever its size
    "test_accumulate": """
def accumulate(model, micro_batches):
    for x, y in micro_batches:
        _, loss = model(x, y)
        (loss / len(micro_batches)).backward()
""",
    # the two arms' losses swapped: each arm's figures read off the other arm's runs
    "test_clipping_experiment": """
my_clip_losses = {"clipped": my_clip_losses["unclipped"], "unclipped": my_clip_losses["clipped"]}
""",
}
