"""`python -m tinylm.prepare` needs a package of this name (the command line is tinylm/cli/prepare.py): `Preparation`
is what it is told and which option applies to which dataset. `mirror` builds the offline data mirror: it takes in
the canonical URLs and digests that the data, tokenizers and eval stages pin, and gives out the folder those stages
read with $TINYLM_DATA_MIRROR set (build_mirror).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..data.fineweb import DEFAULT_CONFIG
from ..settings import option

DATASETS = ("shakespeare-char", "tinystories", "fineweb-edu", "tokenizer", "mirror")
APPLIES = {"file": ("tokenizer",), "tokenizer": ("tokenizer",), "source": ("tinystories", "fineweb-edu"),
           "config": ("fineweb-edu",), "shard_tokens": ("fineweb-edu",), "workers": ("fineweb-edu",)}


@dataclasses.dataclass(frozen=True)
class Preparation:
    """A dataset prepared by name (with the options that apply to it), or what a track reads (--track)."""

    dataset: str | None = option(f"{', '.join(DATASETS[:3])}; tokenizer: a BPE trained on --file; mirror: the "
                                 "offline data mirror", positional=True, nargs="?", choices=DATASETS, metavar="DATASET")
    track: str | None = option(None)
    profile: str | None = option(None)
    source: str | None = option("tinystories, fineweb-edu: hf (the full dataset) or sample (the mirror's; default "
                                "with $TINYLM_DATA_MIRROR)", choices=("hf", "sample"), metavar="S")
    config: str | None = option(f"fineweb-edu's Hugging Face config (default: {DEFAULT_CONFIG})")
    shard_tokens: int | None = option("fineweb-edu: tokens per shard (default 100,000,000; the sample's 20,000)",
                                      metavar="N", minimum=1)
    workers: int | None = option("fineweb-edu: tokenizer processes (default: one per core)", metavar="N", minimum=1)
    file: str | None = option(None)
    tokenizer: str | None = option(None)
    out: Path | None = option(None)

    def problem(self) -> str | None:
        """Why these options make no command (a usage error), or None."""
        given = [name for name in (*APPLIES, "out") if getattr(self, name) is not None]
        if self.track is not None:
            if self.dataset is not None:
                return f"give a dataset or --track, not both (--track {self.track} prepares what that track reads)"
            return (f"--{given[0].replace('_', '-')} applies to a dataset, not to --track (a track's profile decides "
                    "its data and folders; prepare the dataset by name for other settings)") if given else None
        if self.dataset is None:
            return ("name a dataset (shakespeare-char, tinystories, fineweb-edu), mirror, tokenizer, or a track with "
                    "--track")
        if self.profile is not None:
            return "--profile applies to --track only"
        if self.dataset == "tokenizer" and self.file is None:
            return "tokenizer needs --file PATH, the text to train it on"
        if misplaced := [name for name in given if self.dataset not in APPLIES.get(name, DATASETS)]:
            return f"--{misplaced[0].replace('_', '-')} applies to {' and '.join(APPLIES[misplaced[0]])} only"
        if self.dataset == "mirror" and self.out is None:
            return ("mirror needs --out DIR, the folder to build it in (the tests find ../shared/data beside the "
                    "clone, or $TINYLM_DATA_MIRROR)")
        return None
