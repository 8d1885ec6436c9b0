"""`python -m tinylm.sample`: generate text from a checkpoint, streamed.

This package is only the command's name: its command line is tinylm/cli/sample.py, and the work is the library's.
"""
