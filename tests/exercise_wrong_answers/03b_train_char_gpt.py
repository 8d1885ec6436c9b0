"""Notebook 3b: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # the two arms' losses swapped: each arm's figures read off the other arm's runs
    "test_learning_rate_experiment": """
my_losses = {"recipe": my_losses["a sixth"], "a sixth": my_losses["recipe"]}
""",
}
