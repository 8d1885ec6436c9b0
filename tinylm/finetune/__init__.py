"""`python -m tinylm.finetune`: chat fine-tuning (SFT) of a pretrained model.

This package is only the command's name. Its command line is tinylm/cli/finetune.py; the work is
tinylm.posttrain.sft_run.finetune's.
"""
