"""`python -m tinylm.finetune`: chat fine-tuning (SFT) of a pretrained model, through the same Trainer as pretraining.

The command line lives in tinylm/cli/finetune.py, beside the other commands; `tinylm.finetune.main(argv)` runs it
from Python, as the notebooks do.
"""

from .cli.finetune import main

__all__ = ["main"]

if __name__ == "__main__":
    from .cli.finetune import cli

    cli()
