"""`python -m tinylm.rl`: reinforcement learning with verifiable rewards (GRPO).

This package is only the command's name: its command line is tinylm/cli/rl.py, and the work is the library's.
"""
