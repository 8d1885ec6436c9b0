"""Training on your own text: `python -m tinylm.train text --file PATH`, a track made for the text it is given.

`text_recipe` sizes the recipe from the text's size in bytes and the profile: the network and batch of the course
track whose data is nearest in size, steps for about EPOCHS passes within the profile's limit, ten evaluations of
up to EVAL_TOKENS held-out tokens. `--init gpt2` starts from OpenAI's GPT-2 124M and `--init RUN` from a tinylm
checkpoint, each with its own network and tokenizer. `TextPretraining` only prepares this data (tinylm.data.text)
and builds this model; the rest is every track's (tinylm.train.run).
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..config import GPT2_124M, ModelShape, TrainConfig
from ..data.text import find_text_files, parse_tokenizer, prepare_text, text_name
from ..distributed import World, barrier
from ..errors import InputError
from ..model.gpt import GPT
from ..tokenizers.char import CharTokenizer
from ..tokenizers.saved import tokenizer_from_dict
from .checkpoint import load_pretrained
from .options import RunOptions
from .recipes import SHAKESPEARE_CHAR, TINYSTORIES, Recipe, Track, TrainOptions, resolve_recipe
from .run import Finished, Pretraining, Start, run_job

EPOCHS = 8  # passes aimed at, counting BYTES_PER_TOKEN bytes per token (a BPE that packs fewer makes fewer)
STEP_LIMITS = {"smoke": 30, "cpu": 5000, "gpu": 20_000}
EVAL_TOKENS = {"smoke": 4096, "cpu": 262_144, "gpu": 4_194_304}  # held-out tokens scored at each evaluation
BYTES_PER_TOKEN = {"char": 1, "gpt2": 4, "bpe": 4}  # a rough guess of a token's size, to size the recipe


def _shapes(profile: str, tokens: int) -> tuple[ModelShape, TrainConfig]:
    """The network and training settings of the course track whose data is nearest `tokens` in size."""
    if profile != "gpu":
        return TINYSTORIES.recipes[profile]
    if tokens < 5_000_000:
        return SHAKESPEARE_CHAR.recipes["gpu"]
    if tokens < 500_000_000:
        return TINYSTORIES.recipes["gpu"]
    shape = ModelShape.of(GPT2_124M)
    return shape, TrainConfig(batch_size=32, total_batch_tokens=524_288, warmup_steps=715, learning_rate=6e-4,
                              min_lr=6e-5, beta2=0.95, log_interval=10, eval_batch_size=16, compile=True)


def sized_recipe(profile: str, num_bytes: int, tokenizer_kind: str) -> tuple[ModelShape, TrainConfig]:
    """The recipe for a text of `num_bytes` bytes, tokenized by `tokenizer_kind`, on `profile`."""
    tokens = num_bytes // BYTES_PER_TOKEN[tokenizer_kind]
    shape, train = _shapes(profile, tokens)
    per_step = (train.total_batch_tokens or train.batch_size * shape.block_size)
    steps = min(STEP_LIMITS[profile], max(100, math.ceil(EPOCHS * tokens * 0.9 / per_step)))
    evaluations = 0 if profile == "smoke" else max(1, steps // 10)
    train = dataclasses.replace(train, max_steps=steps, warmup_steps=min(train.warmup_steps, steps // 10),
                                eval_interval=evaluations, log_interval=max(1, min(train.log_interval, steps // 10)),
                                sample_interval=0)
    return shape, train


def text_recipe(run: RunOptions = RunOptions(), options: TrainOptions = TrainOptions()) -> Recipe:
    """The Recipe of `train text`: `options.file` (a file, folder or glob) with `options.tokenizer` (char, gpt2 or
    bpe:N; default char) or the `options.init` model's; the rest of `options` and `run` as resolve_recipe takes them."""
    if options.file is None:
        raise InputError("the text track needs --file PATH: a UTF-8 file, a folder of .txt files, or a glob")
    if options.init is not None and (options.tokenizer is not None or options.arch is not None):
        raise InputError(f"--init {options.init} keeps that model's tokenizer and network: drop "
                         f"{'--tokenizer' if options.tokenizer is not None else '--arch'}")
    kind = "gpt2" if options.init is not None else parse_tokenizer(options.tokenizer or "char")[0]
    files = find_text_files(options.file)
    num_bytes = sum(path.stat().st_size for path in files)
    label = (f"init-{re.sub(r'[^A-Za-z0-9_.-]+', '_', Path(options.init).name)}" if options.init
             else (options.tokenizer or "char"))
    track = Track(name="text", prepare_data=lambda profile: prepare_text(options.file, options.tokenizer or "char"),
                  recipes={profile: sized_recipe(profile, num_bytes, kind) for profile in STEP_LIMITS},
                  vocab_multiple=1 if kind == "char" else 64,
                  folder_name=f"text-{text_name(options.file)}-{label.replace(':', '')}")
    return resolve_recipe(track, run, options)


@torch.no_grad()
def crop_context(model: GPT, block_size: int) -> GPT:
    """`model` with its context cut to `block_size` tokens (its first position embeddings kept), if longer."""
    config = model.config
    if config.block_size <= block_size:
        return model
    state = model.state_dict()
    if "transformer.wpe.weight" in state:
        state["transformer.wpe.weight"] = state["transformer.wpe.weight"][:block_size]
    cropped = GPT(dataclasses.replace(config, block_size=block_size))
    cropped.load_state_dict(state)
    return cropped


class TextPretraining(Pretraining):
    """`train text`: the text prepared with the chosen tokenizer (or the --init model's), the recipe's network or
    the --init model, evaluations on the first EVAL_TOKENS held-out tokens."""

    def __init__(self, recipe: Recipe, **kwargs):
        super().__init__(recipe, **kwargs)
        self.file, self.tokenizer_spec, self.init = recipe.options.file, recipe.options.tokenizer, recipe.options.init

    def settle(self, saved: dict[str, Any]) -> None:
        super().settle(saved)
        self.tokenizer_spec = self.tokenizer_spec or saved.get("tokenizer")  # resumed: the saved run's
        self.init = self.init or saved.get("init")

    def data(self, start: Start) -> None:
        self.init_model = None
        if not start.world.is_main:
            barrier()
        if self.init is not None and start.saved is None:
            self.init_model, tokenizer, description, _ = load_pretrained(self.init, option="--init")
            if tokenizer is None:
                raise InputError(f"--init {self.init}: the checkpoint carries no tokenizer, so no text can be "
                                 "tokenized for it; start from a run of python -m tinylm.train")
            start.say(f"starting from {description}")
        elif self.init is not None:
            tokenizer = tokenizer_from_dict(start.saved["tokenizer"])
        else:
            tokenizer = self.tokenizer_spec or "char"
        prepared = prepare_text(self.file, tokenizer, say=start.say)
        if start.world.is_main:
            barrier()
        block_size = (start.saved["model_config"]["block_size"] if start.saved is not None
                      else min(self.init_model.config.block_size, self.recipe.shape.block_size) if self.init_model
                      else self.recipe.shape.block_size)
        check_enough(prepared, block_size, self.file)
        self.held_out_tokens = len(prepared.val)
        self.prepared = dataclasses.replace(prepared, val=prepared.val[:EVAL_TOKENS[self.run.profile]])

    def model(self, start: Start):
        if self.init_model is None:
            return super().model(start)
        model = crop_context(self.init_model, self.recipe.shape.block_size)
        vocab = self.prepared.tokenizer.vocab_size
        if vocab > model.config.vocab_size:
            raise InputError(f"--init {self.init}: its tokenizer has {vocab:,} tokens, its network only "
                             f"{model.config.vocab_size:,} rows; start from another model")
        return model.train(), self.prepared.tokenizer, self.recipe.train

    def option_values(self, trainer) -> dict[str, Any]:
        return {**super().option_values(trainer), "file": str(self.file), "tokenizer": self.tokenizer_spec,
                "init": self.init}

    def epilogue(self, finished: Finished) -> str:
        val = self.prepared.val
        loss = finished.final["val_loss"]
        bits = bits_per_byte(loss, val, self.prepared.tokenizer)
        scope = "the whole held-out split" if len(val) == self.held_out_tokens else \
            f"the first {len(val):,} of {self.held_out_tokens:,} held-out tokens"
        return f"final validation loss ({scope}): {loss:.4f} nats per token, {bits:.4f} bits per byte"


def bits_per_byte(loss: float, tokens: np.ndarray, tokenizer) -> float:
    """A mean loss per target over `tokens` (each but the first is a target) in bits per UTF-8 byte of the targets'
    text; an end-of-text token is no text and has no bytes."""
    targets = np.asarray(tokens[1:], dtype=np.int64)
    if isinstance(tokenizer, CharTokenizer):
        num_bytes = len(tokenizer.decode(targets).encode("utf-8"))
    else:
        num_bytes = len(tokenizer.decode(targets[targets != tokenizer.eot_token]).encode("utf-8"))
    return loss * len(targets) / math.log(2) / max(1, num_bytes)


def check_enough(prepared, block_size: int, file: str) -> None:
    """One batch needs a window of block_size + 1 training tokens, and validation 2 held-out tokens."""
    train, val, meta = len(prepared.train), len(prepared.val), prepared.meta
    if train > block_size and val >= 2:
        return
    total_bytes = meta["train_bytes"] + meta["val_bytes"]
    bytes_per_token = meta["train_bytes"] / max(1, train - meta["train_documents"])  # separators have no bytes
    needed = math.ceil((block_size + 1) * bytes_per_token * 10 / 9)
    raise InputError(f"--file {file}: {total_bytes:,} bytes of text make {train:,} training tokens, too few for one "
                     f"batch: a window of {block_size + 1} tokens needs at least about {needed:,} bytes of text "
                     "(a tenth is held out); give more text")


def train_text(recipe: Recipe, *, world: World | None = None, say: Callable[[str], None] = print) -> Finished:
    """Run the `text_recipe` `recipe` (new, resumed or overwriting: tinylm.train.run)."""
    return run_job(TextPretraining(recipe), world=world, say=say)
