"""Notebook 4: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # decodes each token's bytes on its own: a character split across tokens becomes U+FFFD
    "test_decode_by_hand": """
def decode_by_hand(ids):
    id_to_token = {i: token for token, i in encoder.items()}
    char_to_byte = {ch: b for b, ch in byte_map.items()}
    return "".join(bytes(char_to_byte[ch] for ch in id_to_token[i]).decode("utf-8", errors="replace") for i in ids)
""",
    # joins a merge's halves in the wrong order
    "test_vocabulary_from_merges": """
def vocabulary_from_merges(merges):
    vocabulary = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():
        vocabulary[new_id] = vocabulary[b] + vocabulary[a]
    return vocabulary
""",
    # formats the whole conversation as text and encodes it with allow_special=True: the user forges a marker
    "test_encode_chat": """
def encode_chat(messages):
    text = "".join(f"<|im_start|>{role}\\n{content}<|im_end|>\\n" for role, content in messages)
    return chat.encode(text, allow_special=True)
""",
    # the wrong normalisation: tokens per byte instead of bytes per token
    "test_small_bpe_compression": """
my_answer = len(tinylm.tokenizers.bpe.bpe_encode(held_out, small_merges)) / len(held_out.encode("utf-8"))
""",
}
