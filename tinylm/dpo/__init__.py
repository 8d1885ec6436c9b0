"""`python -m tinylm.dpo`: preference tuning (DPO) of a chat model.

This package is only the command's name. Its command line is tinylm/cli/dpo.py; the work is
tinylm.posttrain.dpo_run.dpo's.
"""
