"""`python -m tinylm.sample`: generate text from a trained checkpoint, streamed to the terminal.

This module is only the name `python -m tinylm.sample` needs; the command line is tinylm/cli/sample.py.
"""

if __name__ == "__main__":
    from tinylm.cli import run

    run("sample")
