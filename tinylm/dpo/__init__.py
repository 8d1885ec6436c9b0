"""`python -m tinylm.dpo`: preference tuning (DPO) of a chat model.

This package is only the command's name: its command line is tinylm/cli/dpo.py, and the work is the library's.
"""
