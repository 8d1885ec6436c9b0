"""`python -m tinylm.sample`: generate text from a trained checkpoint, streamed to the terminal.

The command line lives in tinylm/cli/sample.py, beside the other commands; `tinylm.sample.main(argv)` runs it
from Python, as the notebooks do.
"""

from .cli.sample import main

__all__ = ["main"]

if __name__ == "__main__":
    from .cli.sample import cli

    cli()
