"""`python -m tinylm.serve`: a web page where visitors chat with a fine-tuned model, the replies streamed.

The command line lives in tinylm/cli/serve.py, beside the other commands; `tinylm.serve.main(argv)` runs it
from Python, as the notebooks do.
"""

from .cli.serve import main

__all__ = ["main"]

if __name__ == "__main__":
    from .cli.serve import cli

    cli()
