"""Tokenizers: text in, a list of integer ids out, and back.

`char` (one id per character), `gpt2` (GPT-2's BPE through tiktoken, and trimmed to a corpus), `bpe` (the same BPE
written out readably, and trained from scratch), `hf_bpe` (bpe:N, trained on your text with `tokenizers`), `llama`
(SentencePiece) and `chat_template` (ChatML). Each describes itself as a JSON-safe dict (`to_dict`), which is how
it travels in data folders and checkpoints; `saved.tokenizer_from_dict` rebuilds it.
"""

EOT = "<|endoftext|>"  # the special token that ends a document in every byte-level BPE here
