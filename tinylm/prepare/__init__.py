"""`python -m tinylm.prepare`: download (or copy from the mirror) and tokenize a dataset.

This package is only the command's name. Its command line is tinylm/cli/prepare.py; the work is
in tinylm.data (corpora.prepare_shakespeare_char, corpora.prepare_tinystories,
fineweb.prepare_fineweb_edu).
"""
