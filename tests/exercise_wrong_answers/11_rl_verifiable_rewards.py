"""Notebook 11: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # the gradient of the loss (π − onehot), not of the objective: the opposite direction
    "test_my_policy_gradient": """
def my_policy_gradient(theta, replies, advantages):
    probs = torch.softmax(theta, 0)
    onehot = torch.nn.functional.one_hot(replies, theta.numel()).to(theta.dtype)
    return (advantages[:, None] * (probs - onehot)).mean(0)
""",
    # np.std's spread (dividing by G), not torch.std's (dividing by G - 1)
    "test_my_group_advantages": """
def my_group_advantages(rewards, scale=True, eps=1e-6):
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps) if scale else centred
""",
    # the plain estimate 1 - (1 - c/n)^k, biased low for k >= 2
    "test_my_pass_at_k": """
def my_pass_at_k(n, c, k):
    return 1.0 - (1.0 - c / n) ** k
""",
    # a verdict not backed by the runs asked for: Dr. GRPO trained half GRPO's steps, to save time
    "test_dr_grpo": """
dr = [grpo(RunOptions(profile=PROFILE, out=RUN / f"dr-GRPO-{seed}", overwrite=True, seed=seed, device=str(DEVICE),
                      max_steps=recipe.train.max_steps // 2, set={"scale_advantages": False, "pass_at_samples": 0}),
           PostTrainingOptions(task="stories", base=str(sft_start)), say=quiet, on_record=quiet)["after"]["pass_rate"]
      for seed in SEEDS]
my_verdict = ("GRPO" if min(grpo_rates) > max(dr) else "Dr. GRPO") if told_apart(grpo_rates, dr) else "not told apart"
""",
}
