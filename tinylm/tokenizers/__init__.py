"""Tokenizers: text in, a list of integer ids out, and back.

`char` (one id per character: the first track), `gpt2` (GPT-2's byte-level BPE through tiktoken, and a copy
trimmed to the tokens a corpus uses), `bpe` (the same BPE written out readably, and trained from scratch),
`hf_bpe` (a byte-level BPE trained on your own text with Hugging Face `tokenizers`: bpe:N), `llama`
(SentencePiece, for imported Llama-family models), and `chat_template` (ChatML: a conversation as ids with the mask
of answer tokens, the chat tokens). Every kind describes itself as a small JSON-safe dict (`to_dict`), which is how
they travel in data folders and checkpoints; `saved.tokenizer_from_dict` rebuilds any of them.
"""
