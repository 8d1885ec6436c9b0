"""`python -m tinylm.prepare`: download (or copy from the mirror) and tokenize a dataset.

This package is only the command's name: its command line is tinylm/cli/prepare.py, and the work is the library's.
"""
