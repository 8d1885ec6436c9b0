"""`python -m tinylm.rl`: reinforcement learning with verifiable rewards (GRPO).

This package is only the command's name. Its command line is tinylm/cli/rl.py; the work is
tinylm.posttrain.grpo_run.reinforce's.
"""
