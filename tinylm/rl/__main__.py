"""`python -m tinylm.rl`: reinforcement learning with verifiable rewards (GRPO) on a task a program checks.

This module is only the name `python -m tinylm.rl` needs; the command line is tinylm/cli/rl.py.
"""

if __name__ == "__main__":
    from tinylm.cli import run

    run("rl")
