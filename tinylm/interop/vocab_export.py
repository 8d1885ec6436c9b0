"""A tinylm tokenizer as other programs read it: the token strings by id, the merges, the special tokens and the
model row behind each id (`exported_vocab`); written as Hugging Face's tokenizer.json and read by the GGUF writer.

A trimmed vocabulary keeps its ids, then lists every dropped GPT-2 token on <unk>'s row, since a BPE needs every
token its merges make; padding rows, which no tokenizer produces, are left out (`with_rows`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch

from ..errors import InputError
from ..model.gpt import GPT
from ..tokenizers import EOT
from ..tokenizers.bpe import load_gpt2_bpe
from ..tokenizers.chat_template import IM_END, IM_START, PAD
from ..tokenizers.gpt2 import CHAT_SPECIAL_TOKENS
from ..tokenizers.pretrained import chatml_template

UNK = "<unk>"
EXPORTED_KINDS = "char, GPT-2 (plain, chat or trimmed), trained BPE (bpe:N) and an imported model's BPE"


@dataclass(frozen=True)
class ExportedVocab:
    """A tokenizer's vocabulary for export. `kind`: "chars" (one token per character) or "bpe" (byte-level BPE,
    tokens in GPT-2's byte alphabet, `merges` best first); `rows[i]`: the tinylm model row that id i takes."""

    kind: str
    tokens: list[str]
    merges: list[tuple[str, str]]
    special: dict[str, int]
    rows: list[int]
    tokenizer_json: str  # Hugging Face's tokenizer.json
    # an imported model's own begin, end and padding tokens (else <|endoftext|> is both ends) and chat template
    bos: str | None = None
    eos: str | None = None
    pad: str | None = None
    chat_template: str | None = None

    @property
    def eot(self) -> int | None:
        return self.special.get(EOT)

    @property
    def unk(self) -> int | None:
        return self.special.get(UNK)


def exported_vocab(tokenizer) -> ExportedVocab:
    """The ExportedVocab of a tinylm tokenizer (anything with to_dict()); InputError for a kind it cannot write, or
    for None (a checkpoint without a tokenizer)."""
    description = tokenizer.to_dict() if tokenizer is not None else {}
    kind = description.get("kind")
    if kind == "char":
        chars = description["chars"]
        return _finished(ExportedVocab("chars", list(chars), [], {}, list(range(len(chars))), ""))
    if kind == "bpe":
        return _gpt2_vocab(description["encoding"], kept_ids=None)
    if kind == "bpe-trimmed":
        return _gpt2_vocab(description["encoding"], kept_ids=description["kept_ids"])
    if kind == "trained_bpe":
        return _trained_bpe_vocab(description["json"])
    model = json.loads(description["json"])["model"] if kind == "pretrained" else {}
    if model.get("type") == "WordLevel" and all(len(token) == 1 for token in model["vocab"]):  # characters
        return _finished(ExportedVocab("chars", sorted(model["vocab"], key=model["vocab"].get), [], {},
                                       list(range(len(model["vocab"]))), ""))
    if model.get("type") == "BPE":
        chat = chatml_template(description.get("system_prompt")) if description.get("chatml") else None
        return dataclasses.replace(_trained_bpe_vocab(description["json"]), bos=description.get("bos"),
                                   eos=description.get("eos"), pad=description.get("pad"), chat_template=chat)
    raise InputError(f"the checkpoint's tokenizer is {kind or 'missing'}, which cannot be exported (tokenizer.json, "
                     f"GGUF); {EXPORTED_KINDS} can")


def _gpt2_vocab(encoding: str, kept_ids: list[int] | None) -> ExportedVocab:
    """GPT-2's BPE: ids as GPT-2's (kept_ids None), or a trimmed vocabulary's compact ids, <unk>, then the rest."""
    encoder, merges = load_gpt2_bpe()  # token string -> GPT-2 id, <|endoftext|> (50256) included
    if encoding == "gpt2-chat":
        encoder = {**encoder, **CHAT_SPECIAL_TOKENS}
    by_id = sorted(encoder, key=encoder.get)
    special = {EOT: encoder[EOT], **(CHAT_SPECIAL_TOKENS if encoding == "gpt2-chat" else {})}
    if kept_ids is None:
        return _finished(ExportedVocab("bpe", by_id, merges, special, list(range(len(by_id))), ""))
    kept = set(kept_ids)
    dropped = [i for i in range(len(by_id)) if i not in kept]
    tokens = [by_id[i] for i in kept_ids] + [UNK] + [by_id[i] for i in dropped]
    compact = {token: i for i, token in enumerate(tokens)}
    # a special token the trimmed vocabulary dropped is <unk> to tinylm: no longer special
    special = {token: compact[token] for token, i in special.items() if i in kept} | {UNK: len(kept_ids)}
    rows = list(range(len(kept_ids) + 1)) + [len(kept_ids)] * len(dropped)
    return _finished(ExportedVocab("bpe", tokens, merges, special, rows, ""))


def _trained_bpe_vocab(tokenizer_json: str) -> ExportedVocab:
    saved = json.loads(tokenizer_json)
    model = saved["model"]
    by_id = {i: token for token, i in model["vocab"].items()}
    by_id |= {added["id"]: added["content"] for added in saved.get("added_tokens", [])}
    tokens = [by_id[i] for i in range(len(by_id))]
    merges = [tuple(merge.split(" ", 1)) if isinstance(merge, str) else tuple(merge) for merge in model["merges"]]
    special = {added["content"]: added["id"] for added in saved.get("added_tokens", []) if added.get("special")}
    return ExportedVocab("bpe", tokens, merges, special, list(range(len(tokens))), tokenizer_json)


def _finished(vocab: ExportedVocab) -> ExportedVocab:
    """The vocabulary with its tokenizer.json, built with Hugging Face `tokenizers`."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

    ids = {token: i for i, token in enumerate(vocab.tokens)}
    if vocab.kind == "chars":
        tokenizer = Tokenizer(models.WordLevel(ids, unk_token=UNK))  # no <unk> in the vocabulary: unknown is an error
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
        tokenizer.decoder = decoders.Fuse()
    else:
        tokenizer = Tokenizer(models.BPE(vocab=ids, merges=vocab.merges))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in vocab.special])
    return dataclasses.replace(vocab, tokenizer_json=tokenizer.to_str())


def hf_tokenizer_files(vocab: ExportedVocab, block_size: int) -> dict[str, bytes]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json, for AutoTokenizer.from_pretrained.

    Special-token text in a prompt stays text (split_special_tokens), as tinylm encodes it; decoding keeps spaces as
    they are."""
    named = {"bos_token": EOT, "eos_token": EOT} if vocab.eot is not None else {}
    named |= {"unk_token": UNK} if vocab.unk is not None else {}
    named |= {"pad_token": PAD} if PAD in vocab.special else {}
    named |= {f"{name}_token": token for name, token in (("bos", vocab.bos), ("eos", vocab.eos), ("pad", vocab.pad))
              if token is not None}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": block_size,
              "clean_up_tokenization_spaces": False, "split_special_tokens": True, **named}
    if vocab.chat_template or (IM_START in vocab.special and IM_END in vocab.special):
        config["chat_template"] = vocab.chat_template or chatml_template()
    return {"tokenizer.json": vocab.tokenizer_json.encode("utf-8"),
            "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False).encode("utf-8"),
            "special_tokens_map.json": json.dumps(named, indent=2, ensure_ascii=False).encode("utf-8")}


@torch.no_grad()
def with_rows(model: GPT, rows: list[int]) -> GPT:
    """A copy of `model` whose vocabulary is `rows`: id i embeds (and, through the head, scores) as row rows[i]."""
    index = torch.tensor(rows, device=model.transformer.wte.weight.device)
    state = model.state_dict()
    state["transformer.wte.weight"] = state["transformer.wte.weight"][index]
    state["lm_head.weight"] = state["transformer.wte.weight"] if model.config.tie_weights else \
        state["lm_head.weight"][index]
    copy = GPT(dataclasses.replace(model.config, vocab_size=len(rows))).to(model.transformer.wte.weight)
    copy.load_state_dict(state)
    return copy.train(model.training)

