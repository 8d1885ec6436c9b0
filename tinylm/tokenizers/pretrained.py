"""A published model's tokenizer: its byte-level BPE as Hugging Face `tokenizers` runs it, and its special tokens.

An imported model (SmolLM2, a Llama 3, ...) comes with the tokenizer it was trained with, as a `tokenizer.json` or
as a GGUF file's vocabulary, merges and pre-tokenizer name (`byte_level_bpe_json` rebuilds the JSON from those).
Its ids must be the model's own, so nothing is guessed: a pre-tokenizer tinylm does not know is refused.
`eot_token` is the document separator the model was pretrained with (<|endoftext|> where the vocabulary has one,
else its end-of-sequence token, else none). A ChatML chat template (<|im_start|>role ... <|im_end|>) is tinylm's own
(tinylm.tokenizers.chat_template), so such a model chats, with the default system prompt its template writes.
"""

from __future__ import annotations

import re
from typing import Any

from ..errors import InputError
from . import EOT
from .hf_bpe import HFTokenizer

# How each pre-tokenizer llama.cpp names (tokenizer.ggml.pre) cuts text before the merges; GPT-2's regex is the
# ByteLevel pre-tokenizer's own. smollm: every digit apart, then GPT-2's regex (SmolLM2's tokenizer.json).
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PRE_TOKENIZERS = {"gpt-2": "GPT-2's regex", "gpt2": "GPT-2's regex", "smollm": "digits apart, then GPT-2's regex",
                  "llama-bpe": "Llama 3's regex"}
CHATML_MARKS = ("<|im_start|>", "<|im_end|>")
SYSTEM_TURN = re.compile(r"<\|im_start\|>system(?:\n|\\n)(.*?)<\|im_end\|>", re.DOTALL)


class TokenizerImportError(InputError):
    """A published tokenizer tinylm cannot run as its authors did; the message names what and what can be read."""


def byte_level_bpe_json(tokens: list[str], merges: list[str], pre: str, special: list[str],
                        added: list[str] = ()) -> str:
    """A `tokenizers` JSON for a byte-level BPE given as a GGUF file holds it: tokens by id (in GPT-2's byte
    alphabet), merges "left right" best first, the pre-tokenizer's llama.cpp name, the special tokens (never made
    from text) and the added ones (matched whole in text)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    if pre not in PRE_TOKENIZERS:
        raise TokenizerImportError(f"the pre-tokenizer {pre!r} is not one tinylm knows ({', '.join(PRE_TOKENIZERS)}),"
                                   " and a guess would give the model ids it never saw")
    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=pre == "llama-bpe"))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=pre != "llama-bpe")
    if pre == "smollm":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre == "llama-bpe":
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT), "isolated"),
                                                           byte_level])
    else:
        tokenizer.pre_tokenizer = byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in special])
    tokenizer.add_tokens([AddedToken(token, special=False, normalized=False) for token in added])
    return tokenizer.to_str()


def chatml_system_prompt(chat_template: str | None) -> tuple[bool, str | None]:
    """(whether a Jinja chat template is ChatML, the system prompt it writes when a conversation has none)."""
    if not chat_template or not all(mark in chat_template for mark in CHATML_MARKS):
        return False, None
    match = SYSTEM_TURN.search(chat_template)
    return True, match.group(1).replace("\\'", "'") if match else None


def chatml_template(system_prompt: str | None = None) -> str:
    """ChatML as a Jinja chat template (transformers' apply_chat_template, llama.cpp's chat), as
    tinylm.tokenizers.chat_template renders a conversation; with `system_prompt` written first where a conversation
    has no system message of its own, as SmolLM2's template does."""
    system = "" if system_prompt is None else (
        "{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
        + system_prompt.replace("\\", "\\\\").replace("'", "\\'") + "<|im_end|>\\n' }}{% endif %}")
    return ("{% for message in messages %}" + system + "{{ '<|im_start|>' + message['role'] + '\\n' + "
            "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
            "{{ '<|im_start|>assistant\\n' }}{% endif %}")


def pre_tokenizer_name(tokenizer_json: str) -> str | None:
    """llama.cpp's name for how a tokenizer.json cuts text (the inverse of byte_level_bpe_json), or None."""
    import json

    saved = json.loads(tokenizer_json)
    pre = saved.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if saved.get("normalizer") is not None or kinds[-1:] != ["ByteLevel"]:
        return None
    regex = steps[-1].get("use_regex", True)
    if kinds == ["ByteLevel"] and regex:
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and regex and steps[0].get("individual_digits"):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not regex and steps[0].get("pattern", {}).get("Regex") == LLAMA3_SPLIT:
        return "llama-bpe"
    return None


class PretrainedTokenizer(HFTokenizer):
    """A published model's tokenizer. `json`: its `tokenizers` JSON; `bos`, `eos`, `pad`: those tokens' text (or
    None); `chatml`: whether its chat template is ChatML; `system_prompt`: the one that template writes by default."""

    def __init__(self, json: str, bos: str | None = None, eos: str | None = None, pad: str | None = None,
                 chatml: bool = False, system_prompt: str | None = None):
        super().__init__(json, "imported tokenizer")
        self.bos, self.eos, self.pad, self.chatml, self.system_prompt = bos, eos, pad, chatml, system_prompt
        for name, token in (("bos", bos), ("eos", eos), ("pad", pad)):
            if token is not None and self.token_id(token) is None:
                raise InputError(f"the imported tokenizer's {name} token {token!r} is not in its vocabulary")
        separator = EOT if self.token_id(EOT) is not None else eos
        self.eot_token = self.token_id(separator) if separator is not None else None  # None: as characters have
        self.pad_id = self.token_id(pad) if pad is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "pretrained", "json": self.tokenizer.to_str(), "bos": self.bos, "eos": self.eos,
                "pad": self.pad, "chatml": self.chatml, "system_prompt": self.system_prompt}
