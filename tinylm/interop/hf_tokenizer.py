"""A transformers folder's tokenizer (tokenizer.json, tokenizer_config.json, the chat template) as tinylm runs it.

Hugging Face keeps a fast tokenizer whole in tokenizer.json, which the `tokenizers` package runs as it is; the names
of its special tokens and the chat template sit beside it in tokenizer_config.json (transformers 5 writes the
template as chat_template.jinja). A Hub name is read through `huggingface_hub`, online or from its cache.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import MissingFile
from ..tokenizers.pretrained import PretrainedTokenizer, chatml_system_prompt
from .hf_llama import InteropError


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
