"""Notebook 6b: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # one-sided: the tail of the rarer direction without doubling it
    "test_mcnemar_p": """
import math

def mcnemar_p(first, second):
    gained = sum(not a and b for a, b in zip(first, second))
    lost = sum(a and not b for a, b in zip(first, second))
    n, k = gained + lost, min(gained, lost)
    return 1.0 if n == 0 else sum(math.comb(n, i) for i in range(k + 1)) / 2**n
""",
    # the held-out cloze scored again, where items cut from training stories were asked
    "test_contamination_experiment": """
my_train_items = cloze
my_train_acc_norm = results["story model"].metrics["acc_norm"]
""",
}
