"""Command line: train a track's model, or one on your own text.

Resolves the profile's recipe (tinylm.train.recipes), prepares the track's data and trains through the run
steps (tinylm.train.run), then prints an epilogue: the run folder, the best validation loss, a sample and the
commands to run next. Each block family and the speedrun recipe train into a default folder of their own
(runs/<track>[-<arch>[-<balancing>]|-speedrun]-<profile>). `text --file PATH` trains on your own text
(tinylm.train.text).
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex

from ..data.text import find_text_files
from ..distributed import run_in_world
from ..paths import data_dir, shown
from ..train.options import RunOptions
from ..train.progress import TRAINING_TIME, format_duration
from ..train.recipes import TRACKS, Recipe, TrainOptions, resolve_recipe
from ..train.run import Finished, train
from ..train.text import text_recipe, train_text
from .console import HelpFormatter, begin, command_parser
from .errors import run_cli
from .options import add_options, options_from


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser("python -m tinylm.train", __doc__, (
        "python -m tinylm.train shakespeare-char --profile cpu",
        "python -m tinylm.train tinystories --arch llama --set optimizer=muon",
        "python -m tinylm.train text --file data/shakespeare_char/input.txt"),
        formatter_class=lambda prog: HelpFormatter(prog, max_help_position=22))  # as wide as --learning-rate LR
    parser.add_argument("track", choices=[*sorted(TRACKS), "text"], metavar="TRACK",
                        help=", ".join([*sorted(TRACKS), "text"]))
    add_options(parser, TrainOptions, {})
    add_options(parser, RunOptions, {"out": "runs/TRACK-…-PROFILE", "steps": "optimizer steps",
                                     "batch": "sequences", "fields": "ModelShape or TrainConfig"})
    args = parser.parse_args(argv)
    args.run, args.options = options_from(parser, args, RunOptions), options_from(parser, args, TrainOptions)
    if args.track == "text" and args.file is None:
        parser.error("text needs --file PATH: a UTF-8 file, a folder of .txt files, or a glob")
    given = [f"--{name}" for name in ("file", "tokenizer", "init") if getattr(args, name) is not None]
    if args.track != "text" and given:
        parser.error(f"{given[0]} applies to the text track: python -m tinylm.train text --file PATH")
    return args


def main(argv=None) -> dict:
    args = begin(parse_args(argv), thread_note=True)
    if args.track == "text":
        recipe = text_recipe(args.run, args.options)
        finished = run_in_world(lambda world: train_text(recipe, world=world))
    else:
        recipe = resolve_recipe(args.track, args.run, args.options)
        finished = run_in_world(lambda world: train(recipe, world=world))
    if finished.trainer.world.is_main:
        print(_epilogue(recipe, finished))
    return finished.final


def _epilogue(recipe: Recipe, finished: Finished) -> str:
    """What a finished run prints last: where its output went, how good it got, a sample, and what to run next (only
    what this model can run: HellaSwag only for GPT-2's tokens)."""
    from ..course.repository import next_notebooks, open_notebook_command  # lazy: --help loads no course module
    from ..eval.hellaswag import scorable

    track, out, trainer, final = recipe.track, recipe.run.out, finished.trainer, finished.final
    prompt = track.sample_prompt
    sample = trainer.sample(300, temperature=0.8)
    prompt_option = f" --prompt {shlex.quote(prompt)}" if prompt.strip() else ""
    folder = shlex.quote(shown(out))
    next_steps = [
        f"python -m tinylm.sample --ckpt {folder}{prompt_option} --temperature 0.8   # more from best.pt, streamed",
    ]
    text = _text_to_score(track.name, recipe.options.file)
    if text is not None:
        next_steps.append(f"python -m tinylm.eval loss --ckpt {folder} --text {shlex.quote(shown(text))}"
                          f"   # loss and bits per byte of a text (this one it trained on; any UTF-8 file works)")
    if scorable(trainer.tokenizer):
        next_steps.append(f"python -m tinylm.eval hellaswag --ckpt {folder}   # HellaSwag accuracy")
    plot = (f"import matplotlib.pyplot as plt; from tinylm.course.plotting import plot_losses, read_metrics; "
            f"plot_losses(read_metrics({json.dumps(shown(out))})); plt.savefig({json.dumps(shown(out / 'loss.png'))})")
    next_steps += [
        f"python -c {shlex.quote(plot)}   # the loss curves, drawn into loss.png",
        *(open_notebook_command(name) for name in next_notebooks(track.name)),
    ]
    return "\n".join([
        f"done: step {trainer.step:,} of {trainer.cfg.max_steps:,}, {format_duration(trainer.elapsed)} of training "
        f"({TRAINING_TIME}; {format_duration(finished.seconds)} in all this session)",
        f"run folder: {shown(out)} (settings.json, metrics.jsonl, best.pt, last.pt)",
        f"best validation loss: {final['best_val_loss']:.4f} (best.pt); final: {final['val_loss']:.4f} (last.pt)",
        f"a sample from the final weights (prompt {prompt!r}, 300 tokens, temperature 0.8):",
        "-" * 40, sample, "-" * 40,
        "next:", *(f"  {command}" for command in next_steps),
    ])


def _text_to_score(track: str, file: str | None = None):
    """A text file the run's data preparation left on disk (the track's raw text; text: the first file it read with
    text in it), for the epilogue's `eval loss` example; None when there is none (gpt2-124m's shards keep no text)."""
    if file is not None:
        from ..data.text import read_text_file

        return next(path for path in find_text_files(file) if read_text_file(path, allow_empty=True))
    candidates = {"shakespeare-char": ["shakespeare_char/input.txt"],
                  "tinystories": ["tinystories_sample_trimmed/sample.txt", "tinystories_sample/sample.txt"]}
    for name in candidates.get(track, []):
        if (data_dir() / name).is_file():
            return data_dir() / name
    return None


cli = functools.partial(run_cli, main)  # what `python -m tinylm.train` runs
