"""`python -m tinylm.prepare`: download (or copy from the mirror) and tokenize a dataset, once.

The command line lives in tinylm/cli/prepare.py, beside the other commands; `tinylm.prepare.main(argv)` runs it
from Python, as the notebooks do.
"""

from .cli.prepare import main

__all__ = ["main"]

if __name__ == "__main__":
    from .cli.prepare import cli

    cli()
