"""Notebook 14: one plausible wrong answer per exercise check (tests/notebook_solutions.py)."""

WRONG_ANSWERS = {
    # counts characters, not UTF-8 bytes: "é" is one character but two bytes
    "test_bytes_per_token": """
def bytes_per_token(tokenizer, text):
    return len(text) / len(tokenizer.encode(text))
""",
    # leaves the loss in bits per token: forgets the factor ln 2 that turns bits into nats
    "test_loss_from_bits_per_byte": """
def loss_from_bits_per_byte(bits, bytes_per_token):
    return bits * bytes_per_token
""",
    # a verdict from one seed: the second size trained at the first seed only
    "test_vocabulary_sizes": """
arm_runs["bpe:1024", SEEDS[0]] = train_arm("bpe:1024", SEEDS[0])
MY_SIZES = ("bpe:512", "bpe:1024")
""",
}
