"""`python -m tinylm.finetune`: chat fine-tuning (SFT) of a pretrained model, through the same Trainer as pretraining.

This module is only the name `python -m tinylm.finetune` needs; the command line is tinylm/cli/finetune.py.
"""

if __name__ == "__main__":
    from tinylm.cli import run

    run("finetune")
