"""Group-relative policy optimisation (GRPO) with verifiable rewards: `tasks` (problems a program checks), `rollout`
(groups of sampled completions, pass@k), `objective` (advantages, the clipped loss), `trainer` (`GRPOTrainer`),
`task_base` (the task-format model it starts from), `story_writing` (the story task, rewarded by the verifier),
`recipes` (each profile's) and `run` (`GRPOOptions`, `grpo(run, options)`: what `python -m tinylm.grpo` runs)."""
