"""`python -m tinylm.train`: train a track's model (prepares the data, trains with progress, ends with an epilogue).

The command line lives in tinylm/cli/train.py, beside the other commands; `tinylm.train.main(argv)` runs it
from Python, as the notebooks do.
"""

from .cli.train import main

__all__ = ["main"]

if __name__ == "__main__":
    from .cli.train import cli

    cli()
