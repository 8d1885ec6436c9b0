"""`python -m tinylm.finetune`: chat fine-tuning (SFT) of a pretrained model.

This package is only the command's name: its command line is tinylm/cli/finetune.py, and the work is the library's.
"""
