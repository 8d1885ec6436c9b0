"""The course's tracks: each names its data, how to prepare it, and a recipe per profile.

A recipe is a (ModelShape, TrainConfig) pair per profile (`smoke` for CI, `cpu` what learns fastest per second on
a 2-core laptop, `gpu` the full one); two tracks also have a `speedrun` recipe, which `python -m tinylm.bench
speedrun` races against the default. `resolve_recipe` turns a track, RunOptions (its --set changing ModelShape and
TrainConfig fields) and `TrainOptions` into one frozen `Recipe`; `tinylm.train.run.train(recipe)` runs it. The
command line and the notebooks both go through these two functions. Why the cpu recipes look as they do: the course
guide (notebooks/README.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from ..config import ARCHITECTURES, GPT2_124M, ConfigError, GPTConfig, ModelShape, TrainConfig, with_architecture
from ..data.corpora import (
    PreparedData,
    dataset_source,
    prepare_shakespeare_char,
    prepare_tinystories,
    prepare_trimmed,
)
from ..data.fineweb import (
    SAMPLE_SHARD_TOKENS,
    ShardedWindowLoader,
    prepare_fineweb_edu,
    read_progress,
    val_tokens,
)
from ..distributed import World
from ..errors import InputError
from ..runtime import resolve_profile
from ..settings import option
from ..tokenizers.gpt2 import BPETokenizer, padded_vocab_size
from .options import RunOptions, fields_of, typed_changes

RECIPE_NAMES = ("default", "speedrun")


@dataclass(frozen=True)
class TrainOptions:
    """What `train` is asked for beyond RunOptions: the network and which of the track's recipes; the text track's
    file, tokenizer and starting model. None: the recipe's (resumed: the saved run's)."""

    arch: str | None = option(None)  # --arch, declared in tinylm/cli/flags.py as bench shares it
    balancing: str | None = option("none, aux_loss or loss_free (default: the arch's)", metavar="KIND",
                                   choices=("none", "aux_loss", "loss_free"))
    recipe: str | None = option("default, or speedrun (Muon; cpu and smoke profiles): wins at equal "
                                "time, runs longer to its step limit",
                                metavar="NAME", choices=RECIPE_NAMES)
    file: str | None = option(None)  # --file and --tokenizer, shared with prepare (tinylm/cli/flags.py)
    tokenizer: str | None = option(None)
    init: str | None = option("text: start from gpt2 or a run (default: none)", metavar="MODEL")
    activation_checkpointing: bool = option("rebuild each block in backward: less memory, more time",
                                            default=False)
    fsdp: bool = option("shard the model over torchrun's processes (FSDP2)", default=False)


@dataclass(frozen=True)
class Track:
    name: str
    prepare_data: Callable[[str], PreparedData]  # profile -> prepared data
    recipes: dict[str, tuple[ModelShape, TrainConfig]]
    sample_prompt: str = ""
    vocab_multiple: int = 1  # the embedding is padded to a multiple of this (64 suits GPU matmuls)
    # (data, block_size, batch_size, world, seed) -> a loader; None: random windows of data.train
    make_loader: Callable | None = None
    hellaswag_examples: dict[str, int] = field(default_factory=dict)  # per profile, at each evaluation
    # Per profile where it was measured: the speedrun recipe is the default one trained with Muon, with these
    # ModelShape or TrainConfig fields changed.
    speedruns: dict[str, dict[str, Any]] = field(default_factory=dict)
    folder_name: str = ""  # the default run folder's name before its -<profile> (default: the track's name)

    def recipe(self, profile: str | None = None) -> tuple[ModelShape, TrainConfig]:
        return self.recipes[resolve_profile(profile)]

    def speedrun_changes(self, profile: str | None = None) -> dict[str, Any]:
        """What the speedrun recipe for `profile` changes in the default recipe, as field=value pairs of ModelShape
        and TrainConfig: Muon, and the changes measured with it. A ConfigError names the profiles that have one."""
        profile = resolve_profile(profile)
        if not self.speedruns:
            having = " and ".join(track.name for track in TRACKS.values() if track.speedruns)
            raise ConfigError(f"{self.name} has no speedrun recipe ({having} have one): drop --recipe speedrun")
        if profile not in self.speedruns:
            raise ConfigError(f"the speedrun recipe of {self.name} was measured for the {' and '.join(self.speedruns)} "
                              f"profiles, not for {profile}: use --profile cpu, or drop --recipe speedrun")
        return {"optimizer": "muon", **self.speedruns[profile]}

    def speedrun(self, profile: str | None = None) -> tuple[ModelShape, TrainConfig]:
        """The speedrun recipe for `profile`: the default recipe with `speedrun_changes`."""
        changes = self.speedrun_changes(profile)
        shape, train = self.recipes[resolve_profile(profile)]
        shape_changes, train_changes = fields_of(ModelShape, changes), fields_of(TrainConfig, changes)
        unknown = set(changes) - set(shape_changes) - set(train_changes)
        assert not unknown, f"{self.name}'s speedrun changes name no field of ModelShape or TrainConfig: {unknown}"
        return dataclasses.replace(shape, **shape_changes), dataclasses.replace(train, **train_changes)

    def prepare(self, profile: str | None = None) -> PreparedData:
        return self.prepare_data(resolve_profile(profile))

    def training_data(self, data: PreparedData, block_size: int, batch_size: int, world: World, seed: int):
        """What the Trainer draws batches from: the token array, or this track's loader over shards."""
        if self.make_loader is None:
            return data.train
        return self.make_loader(data, block_size, batch_size, world, seed)


def build_model_config(shape: ModelShape, tokenizer, vocab_multiple: int = 1, arch: str = "gpt2",
                       balancing: str | None = None) -> GPTConfig:
    """The network of `shape` as the block family `arch`, over the tokenizer's vocabulary padded to a multiple of
    `vocab_multiple`."""
    return shape.config(padded_vocab_size(tokenizer.vocab_size, vocab_multiple), arch, balancing)


def architecture_of(config: GPTConfig) -> str | None:
    """The name of the block family `config` is built as (its balancing mode aside), or None for another mix."""
    for name in ARCHITECTURES:
        if dataclasses.replace(with_architecture(config, name), balancing=config.balancing) == config:
            return name
    return None


def default_run_name(track: str, profile: str, arch: str, balancing: str | None = None,
                     recipe: str = "default") -> str:
    """<track>-<profile> for GPT-2's block (as before there were others), <track>-<arch>[-<balancing>]-<profile>
    otherwise, so that the runs of an ablation do not overwrite each other; <track>-speedrun-<profile> for the
    speedrun recipe."""
    parts = [track]
    if recipe != "default":
        parts.append(recipe)
    if arch != "gpt2":
        parts.append(arch)
    if balancing is not None and balancing != ARCHITECTURES[arch].get("balancing"):
        parts.append(balancing)
    return "-".join([*parts, profile])


@dataclass(frozen=True)
class Recipe:
    """One training run, resolved: the track, the run's options (`run`: profile and folder settled; its --set typed),
    what `train` was asked for beyond them (`options`: the block family, None meaning gpt2 for a new run and the
    saved network for a resumed one; which of the track's recipes), the network's shape (the vocabulary is the
    prepared data's) and the training settings with the run's options applied."""

    track: Track
    run: RunOptions
    shape: ModelShape
    train: TrainConfig
    options: TrainOptions = field(default_factory=TrainOptions)

    @property
    def name(self) -> str:
        """Which of the track's recipes: default or speedrun."""
        return self.options.recipe or "default"

    def model_config(self, tokenizer) -> GPTConfig:
        return build_model_config(self.shape, tokenizer, self.track.vocab_multiple, self.options.arch or "gpt2",
                                  self.options.balancing)


def resolve_recipe(track: str | Track, run: RunOptions = RunOptions(),
                   options: TrainOptions = TrainOptions()) -> Recipe:
    """The Recipe for training `track` with the options `run` (its profile: $TINYLM_PROFILE, else by hardware; its
    folder: runs/`default_run_name`; its --set: fields of ModelShape and TrainConfig) as the block family
    `options.arch` (default gpt2; resumed: the saved run's) with `options.balancing` (default: the family's own).
    `options.recipe` "speedrun" takes the track's speedrun recipe (GPT-2's block trained with Muon, so no arch or
    balancing with it). A bad combination (balancing without experts, an unknown field or value) raises an error
    here, before anything else happens."""
    chosen = track if isinstance(track, Track) else get_track(track)
    if run.set:  # typed here, so that the Recipe holds values (typing a value again leaves it as it is)
        run = dataclasses.replace(run, set=typed_changes(run.set, (ModelShape, TrainConfig)))
    arch, balancing, name = options.arch, options.balancing, options.recipe or "default"
    if name not in RECIPE_NAMES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPE_NAMES)}")
    folder = chosen.folder_name or chosen.name
    resolved = run.resolved(lambda profile: default_run_name(folder, profile, arch or "gpt2", balancing, name))
    if name == "speedrun":
        if arch is not None or balancing is not None:
            raise ConfigError("the speedrun recipe chooses its own block (GPT-2's, trained with Muon): "
                              "drop --arch and --balancing, or train the default recipe")
        shape, train_cfg = chosen.speedrun(resolved.profile)
    else:
        shape, train_cfg = chosen.recipes[resolved.profile]
    shape = dataclasses.replace(shape, **resolved.set_fields_of(ModelShape))
    if not run.resume or arch is not None:  # an impossible arch/balancing pair fails now, not after data prep
        shape.config(1, arch or "gpt2", balancing)
    train_cfg = train_cfg.override(**resolved.train_changes())
    train_cfg = train_cfg.override(**{name: True for name in ("activation_checkpointing", "fsdp")
                                       if getattr(options, name)})
    return Recipe(track=chosen, run=resolved, shape=shape, train=train_cfg, options=options)


# Every track's smoke run: two tiny layers for a few steps, which checks that a run works end to end.
SMOKE_SHAPE = ModelShape(block_size=32, n_layer=2, n_head=2, n_embd=32)
SMOKE_TRAIN = TrainConfig(batch_size=8, max_steps=30, warmup_steps=5, learning_rate=3e-3, min_lr=3e-4, eval_interval=0,
                          log_interval=5, eval_batch_size=128)

SHAKESPEARE_CHAR = Track(
    name="shakespeare-char",
    prepare_data=lambda profile: prepare_shakespeare_char(),
    sample_prompt="\n",
    recipes={
        "smoke": (SMOKE_SHAPE, dataclasses.replace(SMOKE_TRAIN, eval_batch_size=256)),
        "cpu": (
            ModelShape(block_size=64, n_layer=1, n_head=4, n_embd=128),
            TrainConfig(batch_size=12, max_steps=6000, warmup_steps=50, learning_rate=6e-3, min_lr=1e-4,
                        beta1=0.8, beta2=0.99, eval_interval=2000, log_interval=200, eval_batch_size=256),
        ),
        "gpu": (
            ModelShape(block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.2),
            TrainConfig(batch_size=64, max_steps=5000, warmup_steps=100, learning_rate=1e-3, min_lr=1e-4,
                        beta2=0.99, eval_interval=250, log_interval=10, eval_batch_size=128),
        ),
    },
    # Muon, and a batch of 32: Newton–Schulz costs the same per step whatever the batch, so a bigger batch shares it
    # among more tokens. The races behind this choice, and the model changes that did not beat Muon:
    # docs/notes/2026-11-26-laptop-speedrun.md.
    speedruns={"smoke": {}, "cpu": {"batch_size": 32}},
)


def _prepare_tinystories(profile: str) -> PreparedData:
    if profile == "gpu":
        return prepare_tinystories()  # the full dataset online; the mirror's sample offline
    return prepare_trimmed(prepare_tinystories(source="sample"))  # computed once, then read from its folder


TINYSTORIES = Track(
    name="tinystories",
    prepare_data=_prepare_tinystories,
    sample_prompt="Once upon a time",
    vocab_multiple=64,
    recipes={
        "smoke": (SMOKE_SHAPE, SMOKE_TRAIN),
        "cpu": (
            ModelShape(block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=16, max_steps=5000, warmup_steps=50, learning_rate=4e-3, min_lr=1e-4,
                        beta2=0.99, eval_interval=400, log_interval=100, sample_interval=800, sample_tokens=80,
                        eval_batch_size=64),
        ),
        # 51M parameters, 1,024 sequences of 256 tokens (262k tokens) per step as in the seed recipe; compiled, in
        # micro-batches of 128 (docs/results/gpu-2026-11-26.md measures it against the seed's 32, eager).
        "gpu": (
            ModelShape(block_size=256, n_layer=8, n_head=8, n_embd=512),
            TrainConfig(batch_size=128, total_batch_tokens=262_144, max_steps=40_000, warmup_steps=2000,
                        learning_rate=5e-4, min_lr=5e-5, eval_interval=1000, log_interval=10, sample_interval=1000,
                        sample_tokens=200, eval_batch_size=64, compile=True),
        ),
    },
    # Muon alone: at equal steps it ends far lower, and a step takes about as long as with AdamW
    # (docs/notes/2026-11-26-laptop-speedrun.md).
    speedruns={"smoke": {}, "cpu": {}},
)

SMALL_RUN_DOCUMENTS = 120  # smoke and cpu online: the stream's first documents, the offline sample's size


def _prepare_fineweb_edu(profile: str) -> PreparedData:
    if profile == "gpu" or dataset_source(None, "FineWeb-Edu") == "sample":
        folder = prepare_fineweb_edu()  # the full sample-10BT online (~10B tokens); the mirror's 120 documents offline
    else:
        folder = prepare_fineweb_edu(max_documents=SMALL_RUN_DOCUMENTS, shard_tokens=SAMPLE_SHARD_TOKENS)
    return PreparedData(folder, train=None, val=val_tokens(folder), tokenizer=BPETokenizer("gpt2"),
                        meta=read_progress(folder))


def _fineweb_loader(data: PreparedData, block_size: int, batch_size: int, world: World,
                    seed: int) -> ShardedWindowLoader:
    return ShardedWindowLoader(data.folder, block_size, batch_size, rank=world.rank, world_size=world.size, seed=seed,
                               vocab_size=data.tokenizer.vocab_size)


GPT2_124M_TRACK = Track(
    name="gpt2-124m",
    prepare_data=_prepare_fineweb_edu,
    make_loader=_fineweb_loader,
    sample_prompt="Hello, I'm a language model,",
    vocab_multiple=64,
    hellaswag_examples={"smoke": 8, "cpu": 100, "gpu": 10_042},
    recipes={
        "smoke": (SMOKE_SHAPE, dataclasses.replace(SMOKE_TRAIN, batch_size=4, max_steps=10, warmup_steps=2,
                                                   eval_batch_size=16)),
        # A demonstration that the whole pipeline runs on a laptop; 60k tokens cannot teach a 50k vocabulary much.
        "cpu": (
            ModelShape(block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=8, max_steps=300, warmup_steps=30, learning_rate=3e-3, min_lr=3e-4,
                        eval_interval=100, log_interval=20, eval_batch_size=8),
        ),
        # GPT-2 small on FineWeb-Edu as in build-nanogpt: 2^19 = 524,288 tokens per step, 19,073 steps (~10B tokens).
        # Each evaluation scores the whole 100M-token validation shard (and HellaSwag), so it runs every 1,000
        # steps: 7% of training's FLOPs on top, where every 250 steps would cost 26% (notebook 6a prints both).
        "gpu": (
            ModelShape.of(GPT2_124M),
            TrainConfig(batch_size=64, total_batch_tokens=524_288, max_steps=19_073, warmup_steps=715,
                        learning_rate=6e-4, min_lr=6e-5, weight_decay=0.1, beta1=0.9, beta2=0.95,
                        eval_interval=1000, log_interval=10, sample_interval=1000, sample_tokens=64,
                        eval_batch_size=16, compile=True),
        ),
    },
)

TRACKS = {track.name: track for track in (SHAKESPEARE_CHAR, TINYSTORIES, GPT2_124M_TRACK)}


def get_track(name: str) -> Track:
    if name not in TRACKS:
        raise InputError(f"unknown track {name!r}; available: {', '.join(TRACKS)}")
    return TRACKS[name]
