"""A tiny chat model for the chat and serve tests: a trimmed GPT-2 vocabulary with the chat tokens, a 2-layer GPT,
a checkpoint of both as `python -m tinylm.sft` writes them, and a chat server running in a thread."""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import torch

from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT
from tinylm.tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ROLES
from tinylm.tokenizers.gpt2 import CHAT_SPECIAL_TOKENS, BPETokenizer, TrimmedBPETokenizer
from tinylm.train.checkpoint import save_checkpoint

TEXT = ("Hello! What is the capital of France? The capital of France is Paris. Name a color. Red is a color. "
        "Thank you, goodbye. " + DEFAULT_SYSTEM_PROMPT + " ")


def tiny_chat_model(block_size: int = 64, seed: int = 0) -> tuple[GPT, TrimmedBPETokenizer]:
    gpt2 = BPETokenizer("gpt2-chat")
    ids = gpt2.encode(TEXT) + [i for role in ROLES for i in gpt2.encode(f"{role}\n")] + gpt2.encode("\n")
    ids += [*CHAT_SPECIAL_TOKENS.values(), gpt2.eot_token]
    tokenizer = TrimmedBPETokenizer.from_ids(ids, "gpt2-chat")
    torch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=128, block_size=block_size, n_layer=2, n_head=2, n_embd=32)).eval()
    return model, tokenizer


def save_tiny_chat_checkpoint(path: Path, block_size: int = 64, tokenizer=None) -> Path:
    model, chat_tokenizer = tiny_chat_model(block_size)
    tokenizer = tokenizer or chat_tokenizer
    save_checkpoint(path, {"model_config": model.config.to_dict(), "model": model.state_dict(),
                           "tokenizer": tokenizer.to_dict(), "step": 0, "elapsed": 0.0})
    return path


@contextmanager
def serving(server):
    """Run a tinylm.serve.server.ChatServer in a thread for the length of a with block."""
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=30)
        server.server_close()
