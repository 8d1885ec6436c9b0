"""Sharing weights: tinylm checkpoints to and from other programs' layouts, checked to give equal logits.

`hf_gpt2` (Hugging Face GPT-2), `hf_llama` (Hugging Face Llama), `llama2c` (llama2.c's .bin files), `gguf_file`
(one GGUF file for llama.cpp, export only) and `vocab_export` (the tokenizer beside the weights: tokenizer.json,
GGUF's token table). `Export` and `Import` are what `python -m tinylm.interop` (tinylm/cli/interop.py) is told, with
where each writes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..paths import check_output_folder, runs_dir
from ..settings import option

FILE_NAMES = {"gguf": "model.gguf", "llama2c": "model.bin"}  # what a file format writes into a folder


@dataclass(frozen=True)
class Export:
    """A checkpoint written as a transformers folder (hf), one GGUF file, or llama2.c's .bin."""

    ckpt: str = option(None)
    out: str = option(None)  # text, not a Path: a trailing slash says "a folder"
    format: str = option("hf: a transformers folder; gguf: one file for llama.cpp; llama2c: run.c's .bin", "hf",
                         metavar="F", choices=("hf", "gguf", "llama2c"))

    def file(self) -> Path:
        """Where a file format writes: --out, or model.gguf / model.bin inside it where --out is a folder (one that
        exists, or one written with a trailing slash, made here)."""
        if self.out.endswith(("/", os.sep)) or Path(self.out).is_dir():
            return check_output_folder(self.out) / FILE_NAMES[self.format]
        return Path(self.out)


@dataclass(frozen=True)
class Import:
    """A checkpoint made from a transformers GPT-2 or Llama, a llama2.c .bin or a Llama GGUF (exactly one)."""

    hf: str | None = option("a transformers folder (GPT-2 or Llama), or a Hub name online", metavar="NAME",
                            one_of="source")
    llama2c: Path | None = option("a llama2.c .bin (the legacy format run.c reads)", metavar="FILE", type=Path,
                                  one_of="source")
    gguf: str | None = option("a Llama-family GGUF file, or a name: {published} (fetched, or read from the offline "
                              "mirror)", metavar="FILE", one_of="source")
    tokenizer_model: Path | None = option("a SentencePiece tokenizer.model, such as stories15M's (default: an HF "
                                          "Llama folder's own, GPT-2's BPE for a GPT-2 of its vocabulary, else none)",
                                          metavar="FILE", type=Path)
    out: Path | None = option(None)

    def checkpoint(self) -> Path:
        """Where the checkpoint goes: --out, last.pt inside it where it is a folder (or has no suffix), and for a
        GGUF without --out runs/<its name> (smollm2-135m-instruct: runs/smollm2-135m-instruct/last.pt)."""
        if self.out is None and not self.gguf:
            raise InputError("give --out, where to write the checkpoint (a run folder gets last.pt)")
        out = self.out or runs_dir() / Path(self.gguf).name.split(".")[0].lower()
        return out / "last.pt" if out.is_dir() or not out.suffix else out
