"""Notebook 10: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # B·A added without the α/r scaling
    "test_merge": """
def merge(layer):
    merged = nn.Linear(layer.base.in_features, layer.base.out_features, bias=layer.base.bias is not None)
    with torch.no_grad():
        merged.weight.copy_(layer.base.weight + layer.lora_B @ layer.lora_A)
        if layer.base.bias is not None:
            merged.bias.copy_(layer.base.bias)
    return merged
""",
    # a tie counted as a loss, not as half a win
    "test_preference_accuracy": """
def preference_accuracy(policy, reference, beta):
    rewards = beta * (policy - reference)
    return (rewards[:, 0] > rewards[:, 1]).float().mean().item()
""",
    # the opposite verdict: the arm with the lower test pass rate (where the two tie, an arm instead of "tie")
    "test_lora_against_full": """
rates = {arm: json.loads((RUNS / f"sft-{arm}" / "sft_eval.json").read_text())["after"]["pass_rate"]
         for arm in ("full", "lora")}
my_better = min(rates, key=rates.get)
""",
    # α kept at rank 8's value (a fixed α = 8), not tinylm's default α = r that the exercise asks for
    "test_rank1_pass_rate": """
report = sft(RunOptions(profile=PROFILE, out=RUNS / "sft-lora-rank1", overwrite=True, seed=SEED,
                        max_steps=COMPARE_STEPS),
             PostTrainingOptions(task="stories", lora=LoRAOptions(rank=1, alpha=RANK, targets=TARGETS)), say=quiet,
             on_record=quiet)
my_rank1_pass_rate = report["after"]["pass_rate"]
""",
    # half the rate, not a fifth
    "test_low_rate_rewards": """
low = dpo(RunOptions(profile=PROFILE, out=RUNS / "dpo-low", overwrite=True, seed=SEED,
                     learning_rate=recipe.train.learning_rate / 2, set={"beta": BETA}),
          PostTrainingOptions(task="stories", base=sft_start, data=str(dpo_dir(SEED, SEED))), say=quiet,
          on_record=quiet)
my_low_chosen_reward = low["preference"]["after"]["validation"]["chosen_reward"]
""",
}
