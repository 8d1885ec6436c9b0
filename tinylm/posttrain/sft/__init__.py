"""Supervised fine-tuning (SFT): `recipes` (each profile's), `trainer` (`SFTTrainer`), `base` (the model it starts
from) and `run` (`SFTOptions`, `sft(run, options)`: what `python -m tinylm.sft` runs)."""
