"""`python -m tinylm.prepare`: download (or copy from the mirror) and tokenize a dataset, once.

This module is only the name `python -m tinylm.prepare` needs; the command line is tinylm/cli/prepare.py.
"""

if __name__ == "__main__":
    from tinylm.cli import run

    run("prepare")
