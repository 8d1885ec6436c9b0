"""Sharing weights: tinylm checkpoints to and from other programs' layouts, checked to give equal logits.

`hf_gpt2` (Hugging Face GPT-2), `hf_llama` (Hugging Face Llama), `llama2c` (llama2.c's .bin files), `gguf_file`
(one GGUF file for llama.cpp, export only) and `vocab_export` (the tokenizer beside the weights: tokenizer.json,
GGUF's token table).

`python -m tinylm.interop` runs the command line (tinylm/cli/interop.py).
"""
