"""A transformers folder's tokenizer (tokenizer.json, tokenizer_config.json, the chat template) as tinylm runs it.

Hugging Face keeps a fast tokenizer whole in tokenizer.json, which the `tokenizers` package runs as it is; the names
of its special tokens and the chat template sit beside it in tokenizer_config.json (transformers 5 writes the
template as chat_template.jinja). A Hub name is read through `huggingface_hub`, online or from its cache. A GPT-2
folder whose tokenizer is GPT-2's BPE, or that has none but GPT-2's vocabulary size, gets tiktoken's GPT-2 BPE.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..config import GPT2_124M
from ..errors import MissingFile
from ..tokenizers.bpe import load_gpt2_bpe
from ..tokenizers.pretrained import PretrainedTokenizer, chatml_system_prompt
from .hf_llama import InteropError

GPT2_TOKENIZER = {"kind": "bpe", "encoding": "gpt2"}
# What a Hugging Face folder holds its tokenizer in (a fast tokenizer, GPT-2's slow one, or SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer.model")


def _hub_file(name: str, file: str) -> str | None:
    """The text of `file` in the Hub model `name` (downloaded or cached), or None where the model has no such file."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return Path(hf_hub_download(name, file)).read_text(encoding="utf-8")
    except EntryNotFoundError:
        return None
    except Exception as error:  # offline, an unknown name, a refused download: one line, as the weights' load does
        raise MissingFile(f"could not read {file} of {name!r} from the Hub ({type(error).__name__}); "
                          "offline, give a local folder") from None


def _read(source: str, file: str) -> str | None:
    folder = Path(source)
    if folder.is_dir():
        return (folder / file).read_text(encoding="utf-8") if (folder / file).is_file() else None
    return _hub_file(source, file)


def _token_text(value) -> str | None:
    """A special token as tokenizer_config.json writes it: its text, or {"content": text, ...}."""
    return value.get("content") if isinstance(value, dict) else value


def hf_tokenizer(source: str) -> PretrainedTokenizer | None:
    """The tokenizer of a transformers folder or Hub model (None where it has no tokenizer.json)."""
    tokenizer_json = _read(source, "tokenizer.json")
    if tokenizer_json is None:
        return None
    try:
        config = json.loads(_read(source, "tokenizer_config.json") or "{}")
    except json.JSONDecodeError as error:
        raise InteropError(f"{source}: its tokenizer_config.json is not JSON ({error})") from None
    template = config.get("chat_template")
    if template is None:
        template = _read(source, "chat_template.jinja")
    chatml, system_prompt = chatml_system_prompt(template if isinstance(template, str) else None)
    return PretrainedTokenizer(tokenizer_json, *(_token_text(config.get(f"{name}_token")) for name in
                                                 ("bos", "eos", "pad")), chatml, system_prompt)


def is_gpt2_bpe(tokenizer: PretrainedTokenizer) -> bool:
    """Whether a folder's tokenizer is GPT-2's own BPE, which tiktoken runs (faster, and as every GPT-2 run does)."""
    encoder, _ = load_gpt2_bpe()
    return tokenizer.tokenizer.get_vocab(with_added_tokens=True) == encoder


def assumed_gpt2_tokenizer(source: str, vocab_size: int) -> tuple[dict | None, str]:
    """For a Hugging Face GPT-2 without tokenizer.json, given no --tokenizer-model: GPT-2's BPE where the model's
    rows hold GPT-2's tokens, with the note that says it is assumed; else (None, ""), or for a folder without
    tokenizer files an error (its ids would mean nothing)."""
    gpt2_tokens = GPT2_124M.vocab_size
    has_files = not os.path.isdir(source) or any((Path(source) / name).is_file() for name in TOKENIZER_FILES)
    why = ("the folder has no tokenizer.json, the tokenizer file tinylm reads" if has_files else
           f"{source} holds no tokenizer files")
    if vocab_size >= gpt2_tokens:
        return GPT2_TOKENIZER, (f"tokenizer: GPT-2's BPE, assumed: {why}, and the model's {vocab_size:,} rows hold "
                                f"GPT-2's {gpt2_tokens:,} tokens")
    if not has_files:
        raise InteropError(f"{why}, and its vocabulary of {vocab_size:,} tokens is not GPT-2's {gpt2_tokens:,}, so "
                           "no tokenizer tinylm has fits it; give the one it was trained with: --tokenizer-model "
                           "FILE (a SentencePiece tokenizer.model)")
    return None, ""
