"""The story task, shared by SFT, DPO and GRPO: its instructions, the story model they start from, its verifier.

The instructions (tinylm.data.story_instructions) come from the TinyStories sample, split once by story: SFT trains
on the train split's, selects on the validation split's and reports on the test split's; DPO and GRPO use the same
splits, so every method is scored on the same test instructions. The base is a small story model pretrained on the
train split's stories only (`pretrain_story_base`, through `tinylm.train.run.train`, in runs/stories-base-<profile>),
in GPT-2's tokenization trimmed to what those stories and the names use; it never sees an instruction. The verifier
(`story_verifier`) takes that base as its fluency guard, calibrated on the validation openings. A base asked in
plain text gets the instruction and a newline (`plain_prompt`), as a story follows its title.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..config import ModelShape, TrainConfig
from ..data.corpora import TINYSTORIES_SAMPLE, PreparedData, split_stories
from ..data.preference import prompt_messages
from ..data.story_instructions import StoryInstruction, character_names, split_stories_three_ways, story_instructions
from ..download import fetch
from ..errors import InputError
from ..paths import data_dir, runs_dir, shown
from ..tokenizers.gpt2 import BPETokenizer, TrimmedBPETokenizer
from ..train.checkpoint import load_checkpoint, load_model
from ..train.options import RunOptions
from ..train.recipes import Recipe, Track
from ..train.run import train
from ..train.run_folder import run_file
from .verifier import Verifier

OPENING_TOKENS = 96  # the longest story opening a reply is trained on: with the prompt, it fits a context of 128
SFT_REPORT = "sft_eval.json"  # an SFT run's report; a stories run's names the story base of its verifier
STORY_REPLY_TOKENS = 120  # a story reply's cap: the SFT targets are openings of at most OPENING_TOKENS
TRAIN_VARIANTS = 4  # instructions per training story (each its own opening, name and word)

# (model shape, pretraining recipe) of the story base per profile; the vocabulary is the trimmed tokenizer's.
STORY_BASE_RECIPES = {
    "smoke": (ModelShape(block_size=128, n_layer=2, n_head=2, n_embd=32),
              TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
                          eval_interval=0, log_interval=10, eval_batch_size=64, dtype="float32")),
    "cpu": (ModelShape(block_size=128, n_layer=4, n_head=4, n_embd=128),
            TrainConfig(batch_size=16, max_steps=800, warmup_steps=50, learning_rate=4e-3, min_lr=1e-4, beta2=0.99,
                        eval_interval=400, log_interval=100, eval_batch_size=64, dtype="float32")),
    "gpu": (ModelShape(block_size=128, n_layer=6, n_head=6, n_embd=384, dropout=0.1),
            TrainConfig(batch_size=64, max_steps=3000, warmup_steps=100, learning_rate=1e-3, min_lr=1e-4, beta2=0.99,
                        eval_interval=500, log_interval=50, eval_batch_size=64)),
}


@dataclass(frozen=True)
class StoryTask:
    """The instructions of each split and the names they draw from."""

    train: list[StoryInstruction]
    validation: list[StoryInstruction]
    test: list[StoryInstruction]
    names: tuple[str, ...]
    stories: dict[str, list[str]]  # the stories of each split, whole


@functools.lru_cache(maxsize=2)
def load_story_task(train_variants: int = TRAIN_VARIANTS) -> StoryTask:
    """The task from the TinyStories sample (the mirror's, or its pinned URL), the same on every call."""
    text = fetch(TINYSTORIES_SAMPLE, data_dir() / "stories" / "tinystories_sample.txt").read_text(encoding="utf-8")
    stories = split_stories_three_ways(split_stories(text))
    names = character_names(stories["train"])
    encode = BPETokenizer("gpt2").encode
    made = {part: story_instructions(stories[part], names, encode, seed=seed, max_tokens=OPENING_TOKENS,
                                     variants=train_variants if part == "train" else 1)
            for part, seed in (("train", 0), ("validation", 1), ("test", 2))}
    return StoryTask(names=names, stories=stories, **made)


def story_prompts(instructions: Sequence[StoryInstruction], system_prompt: str) -> list[list[dict]]:
    """Each instruction as the conversation a chat model replies to: `system_prompt`, then the user's turn."""
    return [prompt_messages({"instruction": i.instruction}, system_prompt) for i in instructions]


def plain_prompt(instruction: StoryInstruction) -> str:
    return instruction.instruction + "\n"


def story_base_track() -> Track:
    """The base's track: the train stories (and the validation ones for its validation loss) in GPT-2's tokens
    trimmed to what the train stories and the names use."""

    def prepare(profile: str) -> PreparedData:
        task, gpt2 = load_story_task(), BPETokenizer("gpt2")
        encoded = {part: [ids + [gpt2.eot_token] for ids in gpt2.encoding.encode_ordinary_batch(task.stories[part])]
                   for part in ("train", "validation")}
        train_ids = np.concatenate([np.array(ids) for ids in encoded["train"]])
        names = gpt2.encoding.encode_ordinary(" " + " ".join(task.names))
        tokenizer = TrimmedBPETokenizer.from_ids(np.concatenate([train_ids, np.array(names)]))
        val_ids = np.concatenate([np.array(ids) for ids in encoded["validation"]])
        return PreparedData(data_dir() / "stories", tokenizer.compact(train_ids), tokenizer.compact(val_ids), tokenizer,
                            {"source": "TinyStories sample, train split"})

    return Track(name="stories-base", prepare_data=prepare, recipes=STORY_BASE_RECIPES,
                 sample_prompt="Once upon a time", vocab_multiple=64)


def story_base_folder(profile: str) -> Path:
    return runs_dir() / f"stories-base-{profile}"


def pretrain_story_base(profile: str, out: Path | None = None, device=None, world=None,
                        say: Callable[[str], None] = print) -> Path:
    """The story base of `profile` in `out` (default runs/stories-base-<profile>): reused when finished, resumed
    when interrupted, pretrained otherwise; returns its best.pt."""
    out = story_base_folder(profile) if out is None else Path(out)
    saved_at = run_file(out, "last.pt")
    saved = load_checkpoint(saved_at) if saved_at.is_file() else None
    if saved is not None and saved["step"] >= STORY_BASE_RECIPES[profile][1].max_steps:
        say(f"story base: {shown(out)} (pretrained earlier, {saved['step']} steps)")
        return run_file(out, "best.pt")
    shape, cfg = STORY_BASE_RECIPES[profile]
    run = RunOptions(out=out, resume=saved is not None, profile=profile, device=None if device is None else str(device))
    train(Recipe(track=story_base_track(), run=run, shape=shape, train=cfg), world=world, say=say)
    return out / "best.pt"


def verifier_base(base: str | Path, profile: str) -> Path:
    """The story base whose verifier scores a policy started from `base` (an SFT stories run folder or one of its
    checkpoints): the one the run's sft_eval.json names where that path still exists (a copied or moved run's may
    not), else runs/stories-base-<profile>."""
    folder = Path(base) if Path(base).is_dir() else Path(base).parent
    report = folder / SFT_REPORT
    named = json.loads(report.read_text(encoding="utf-8")).get("verifier", {}).get("base") if report.is_file() else None
    found = Path(named) if named and Path(named).exists() else story_base_folder(profile)
    if not found.exists():
        raise InputError(f"the verifier's story base {shown(found)} is missing: it is what `python -m tinylm.sft "
                        f"--task stories --profile {profile}` pretrains first")
    return found


def story_verifier(base: str | Path, task: StoryTask | None = None, fluency: bool = True) -> Verifier:
    """The verifier whose fluency guard is the story base at `base` (a run folder or checkpoint), calibrated on the
    validation openings."""
    model, tokenizer, _ = load_model(base)
    verifier = Verifier(model, tokenizer, fluency=fluency)
    if fluency:
        verifier.calibrate([instruction.story for instruction in (task or load_story_task()).validation])
    return verifier
