"""Group-relative policy optimisation (GRPO) with verifiable rewards: `rollout` (groups of sampled completions,
pass@k), `objective` (advantages, the clipped loss), `trainer` (`GRPOTrainer`) and `run` (`grpo(run, options)`: what
`python -m tinylm.grpo` runs), on any task of tinylm.posttrain.tasks with a GRPO recipe."""
