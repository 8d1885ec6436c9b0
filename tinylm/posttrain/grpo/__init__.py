"""Group-relative policy optimisation (GRPO) with verifiable rewards: `tasks` (problems a program checks), `rollout`
(groups of sampled completions), `objective` (advantages, the clipped loss), `trainer` (`GRPOTrainer`), `task_base`
(the task-format model it starts from), `recipes` (each profile's) and `run` (`GRPOOptions`, `grpo(run, options)`:
what `python -m tinylm.grpo` runs)."""
