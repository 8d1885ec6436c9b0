"""`python -m tinylm.serve`: a web page where visitors chat with a fine-tuned model, the replies streamed.

This module is only the name `python -m tinylm.serve` needs; the command line is tinylm/cli/serve.py.
"""

if __name__ == "__main__":
    from tinylm.cli import run

    run("serve")
