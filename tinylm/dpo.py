"""`python -m tinylm.dpo`: preference tuning (DPO) of a chat model, through the same Trainer as pretraining and SFT.

This module is only the name `python -m tinylm.dpo` needs; the command line is tinylm/cli/dpo.py.
"""

if __name__ == "__main__":
    from tinylm.cli import run

    run("dpo")
