"""Notebook 6c: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # ZeRO-2's count for ZeRO-1: the gradients sharded too
    "test_state_bytes_per_rank": """
def state_bytes_per_rank(n_params, ranks, way):
    weights, gradients, moments = 4 * n_params, 4 * n_params, 8 * n_params
    if way == "ddp":
        return weights + gradients + moments
    if way == "zero1":
        return weights + (gradients + moments) / ranks
    return (weights + gradients + moments) / ranks
""",
    # the race above again: the same vocabulary, so the same share
    "test_checkpointing_saves_more_where_the_blocks_dominate": """
small_vocab_race = race
""",
}
