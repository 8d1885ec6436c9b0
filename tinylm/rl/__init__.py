"""Reinforcement learning with verifiable rewards: problems a program can check, in; a policy trained on them, out.

`tasks` generates problems (multi-digit arithmetic, Countdown) with a fixed held-out set and scores a completion
(correct answer, well-formed answer); `grpo` holds group-relative policy optimisation (DeepSeekMath): a group of
sampled completions per prompt, advantages normalised within the group, and the clipped policy-gradient objective;
`rollout` samples the groups with the KV cache; `base` builds the task-format model RL starts from (answer-only
SFT through the Trainer); `recipes` holds each profile's settings; `trainer` is the GRPO loop (checkpoints, resume,
DDP); `run` is one run start to finish, what `python -m tinylm.rl` runs.
"""
