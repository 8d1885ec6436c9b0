"""Sharing weights: tinylm checkpoints to and from other programs' layouts, checked to give equal logits.

`hf_gpt2` (Hugging Face GPT-2), `hf_llama` (Hugging Face Llama), `llama2c` (llama2.c's .bin files).

`python -m tinylm.interop` runs the command line (tinylm/cli/interop.py).
"""
