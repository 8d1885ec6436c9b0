"""`python -m tinylm.sample`: generate text from a checkpoint, streamed.

This package is only the command's name. Its command line is tinylm/cli/sample.py; the work is
tinylm.generate.stream's.
"""
