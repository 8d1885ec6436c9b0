"""The model SFT starts from (--base): OpenAI's GPT-2 124M from Hugging Face (`gpt2`; offline, a folder saved by
transformers or a tinylm checkpoint made from one with `python -m tinylm.interop import`), a run folder or a
checkpoint, or `pretrain`: the profile's small base pretrained first in OUT/base (tinylm.posttrain.chat_base says
why)."""

from __future__ import annotations

import os
from pathlib import Path

from ...errors import InputError
from ...paths import shown
from ...tokenizers.gpt2 import BPETokenizer
from ...train.checkpoint import CheckpointError, load_model
from ...train.options import RunOptions
from ...train.run import Start
from ..chat_base import BASE_RECIPES, BaseModelUnavailable, pretrain_base


def load_base(base: str, run: RunOptions, instruction_texts: list[str], start: Start):
    """(model, tokenizer, description) of --base; `pretrain` trains the small base in run.out/base first, with a
    vocabulary trimmed to what it and the instruction texts use."""
    if base == "pretrain":
        if run.profile not in BASE_RECIPES:
            raise InputError(f"--base pretrain trains the small base of the cpu and smoke profiles; the {run.profile} "
                             "profile starts from --base gpt2, a run folder or a checkpoint")
        checkpoint = pretrain_base(run.profile, run.out / "base", instruction_texts, start.device, start.world,
                                   start.say)
        model, tokenizer, _ = load_model(checkpoint)
        return model, tokenizer, f"small base pretrained in {shown(checkpoint.parent)}"
    if base == "gpt2" or (Path(base) / "config.json").is_file():  # a folder transformers saved
        return _load_gpt2(base)
    model, tokenizer, _ = load_model(base)
    if tokenizer is None:
        raise CheckpointError(f"{shown(base)} carries no tokenizer; chat fine-tuning needs GPT-2's BPE tokenizer")
    return model, tokenizer, shown(base)


def _load_gpt2(base: str):
    from ...interop.hf_gpt2 import from_hf_gpt2

    how = ("Offline, point --base at a local copy: a folder saved by transformers (GPT2LMHeadModel.save_pretrained: "
           "config.json and model.safetensors), or a tinylm checkpoint made from one with python -m tinylm.interop "
           "import --hf FOLDER --out gpt2.pt.")
    if base == "gpt2" and os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
        raise BaseModelUnavailable(f"--base gpt2 downloads OpenAI's GPT-2 124M from Hugging Face, but HF_HUB_OFFLINE "
                                   f"is set. {how}")
    try:
        return from_hf_gpt2(base), BPETokenizer("gpt2"), f"GPT-2 through transformers ({base})"
    except OSError as error:
        raise BaseModelUnavailable(f"could not load GPT-2 from {base!r}: it needs the network. {how}") from error
