"""Supervised fine-tuning (SFT) of a pretrained model into a chat model: `trainer` (`SFTTrainer`) and `run` (`sft`,
what `python -m tinylm.sft` runs), on any task of tinylm.posttrain.tasks with an SFT recipe."""
