"""Notebook 8b: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # the router left out of the active count, though every token runs it
    "test_moe_layer_parameters": """
def moe_layer_parameters(C, h, E, k, s):
    expert = 3 * C * h
    router = C * E
    return router + E * expert + s * expert, k * expert + s * expert
""",
    # off by one: counts steps from 1, not from the first step's index 0
    "test_my_steps_by_rate": """
my_steps_by_rate = {rate: next((step for step, v in enumerate(balance(rate), start=1) if v < 0.5), None)
                    for rate in (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)}
""",
    # the ceiling taken as E/k, the busiest expert's load over the mean, without the - 1
    "test_my_ceiling": """
my_ceiling = moe_cfg.n_experts / moe_cfg.n_experts_active
""",
    # off by one in the slice: the auxiliary loss and loss-free arms, not no balancing and the auxiliary loss
    "test_balancing_modes": """
balancing_runs = train_arms(balancing_arms[1:], SEEDS, arm_recipe, train_tokens, data.val, device=DEVICE,
                            tokenizer=data.tokenizer, test_data=test_tokens)
""",
    # a clock without lifting the step limit: a run that reaches ARM_STEPS first stops there
    "test_moe_equal_time": """
moe_equal_time_runs = train_arms(arms, SEEDS, dataclasses.replace(arm_recipe, max_seconds=dense_seconds),
                                 train_tokens, data.val, device=DEVICE, tokenizer=data.tokenizer,
                                 test_data=test_tokens)
""",
}
