"""Command line: train a track's model.

    python -m tinylm.train shakespeare-char [--profile smoke|cpu|gpu] [--max-seconds S] [--out DIR] [--resume]
        [--learning-rate LR]
    python -m tinylm.train tinystories --arch llama-moe [--balancing none|aux_loss|loss_free]
    python -m tinylm.train shakespeare-char --recipe speedrun [--profile cpu]

Prepares the data (downloading it, or copying it from $TINYLM_DATA_MIRROR), builds the profile's
recipe, and trains with progress printed: a header with the planned steps (and the time budget),
a plan with the expected training time once the first steps are measured, and a line every few
steps with the step of the total, loss, learning rate, tokens/s, training time and ETA. It ends
with the validation loss over the whole split and an epilogue: where the run folder is, the best
validation loss, a sample, and the commands to run next. The run folder gets metrics.jsonl (one
JSON record per line; the last one holds val_loss), best.pt and last.pt.

--max-seconds budgets training time only: evaluations, checkpoints and samples are not counted,
so the run takes that long plus their time (the cosine schedule follows the budget).

While a run trains, the folder also holds run.lock (its pid, host and start time): a second run into the same
folder stops with an error that names the first (a lock left by a killed run is taken over). --overwrite replaces
the old run, which survives until the new one has a checkpoint (a new run that fails before that puts it back);
--resume and --overwrite exclude each other. Ctrl-C saves last.pt, says how to resume, and exits with status 130.

--arch builds the recipe's shape as another block family (tinylm.config.ARCHITECTURES): gpt2 (the
default), llama (RMSNorm, RoPE, SwiGLU, grouped-query attention) or llama-moe (with a mixture of
experts, whose --balancing can be chosen). Each gets its own default run folder:
runs/<track>-<profile> for gpt2, runs/<track>-<arch>[-<balancing>]-<profile> otherwise (the balancing
named only when it is not the family's own). --resume rebuilds the model from the checkpoint's own config.

--recipe speedrun trains the track's speedrun recipe instead (cpu and smoke profiles of shakespeare-char and
tinystories): the default recipe with what won the laptop speedrun's measurements, Muon for the blocks' matrices
(and for shakespeare-char a batch of 32 sequences instead of 12), into runs/<track>-speedrun-<profile>.
`python -m tinylm.bench speedrun` races it against the default recipe. --optimizer muon trains any recipe's block
matrices with Muon (at TrainConfig.muon_learning_rate) and the rest with AdamW.

--learning-rate replaces the recipe's peak learning rate and scales its floor (min_lr) by the same
factor, so the schedule keeps its shape. A run whose loss becomes NaN or infinite stops with a
one-line error that names the rate to retry with. --out and --device are checked before the data is
prepared, so a path that runs through a file, or a GPU this machine lacks, fails at once.
"""

from __future__ import annotations

import argparse
import json
import shlex

from ..config import ARCHITECTURES, BALANCING, OPTIMIZERS
from ..distributed import run_in_world
from ..paths import data_dir, shown
from ..repository import next_notebooks, open_notebook_command
from ..train.progress import TRAINING_TIME, format_duration
from ..train.recipes import RECIPE_NAMES, TRACKS, Recipe, resolve_recipe
from ..train.run import Finished, train
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli
from .run_options import add_run_options, run_options


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.train", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.train shakespeare-char --profile cpu",
                        "python -m tinylm.train tinystories --arch llama --max-seconds 600",
                        "python -m tinylm.train shakespeare-char --profile cpu --resume --learning-rate 3e-3",
                        "python -m tinylm.train shakespeare-char --recipe speedrun --profile cpu"))
    parser.add_argument("track", choices=sorted(TRACKS), help="what to train")
    parser.add_argument("--recipe", choices=RECIPE_NAMES, help="the track's default recipe (the default), or "
                        "its speedrun recipe (Muon for the blocks' matrices; cpu and smoke profiles)")
    add_run_options(parser, out="runs/<track>-<profile> for gpt2, runs/<track>-<arch>-<profile> otherwise, "
                    "runs/<track>-speedrun-<profile> with --recipe speedrun",
                    batch="sequences")
    parser.add_argument("--arch", choices=list(ARCHITECTURES),
                        help="block family (default: gpt2 for a new run, the checkpoint's with --resume)")
    parser.add_argument("--balancing", choices=BALANCING, help="a mixture of experts' load balancing "
                        "(default: the family's own, loss_free for llama-moe)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, help="adamw for every parameter, or muon for the blocks' "
                        "matrices and AdamW for the rest (default: the recipe's)")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the training step (default: the recipe's, off)")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = begin(parse_args(argv))
    recipe = resolve_recipe(args.track, run_options(args), arch=args.arch, balancing=args.balancing,
                            recipe=args.recipe, optimizer=args.optimizer, compile=args.compile)
    finished = run_in_world(lambda world, held: train(recipe, world=world))
    if finished.trainer.world.is_main:
        print(_epilogue(recipe, finished))
    return finished.final


def _epilogue(recipe: Recipe, finished: Finished) -> str:
    """What a finished run prints last: where its output went, how good it got, a sample, and what to run next."""
    track, out, trainer, final = recipe.track, recipe.run.out, finished.trainer, finished.final
    prompt = track.sample_prompt
    sample = trainer.sample(300, temperature=0.8)
    prompt_option = f" --prompt {shlex.quote(prompt)}" if prompt.strip() else ""
    folder = shlex.quote(shown(out))
    next_steps = [
        f"python -m tinylm.sample --ckpt {folder}{prompt_option}   # more text from best.pt, streamed",
    ]
    text = _text_to_score(track.name)
    if text is not None:
        next_steps.append(f"python -m tinylm.eval loss --ckpt {folder} --text {shlex.quote(shown(text))}"
                          f"   # loss and bits per byte of a text (this one it trained on; any UTF-8 file works)")
    if getattr(trainer.tokenizer, "eot_token", None) is not None:  # a BPE model: it can take HellaSwag
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
        f"run folder: {shown(out)} (metrics.jsonl, best.pt, last.pt)",
        f"best validation loss: {final['best_val_loss']:.4f} (best.pt); final: {final['val_loss']:.4f} (last.pt)",
        f"a sample from the final weights (prompt {prompt!r}, 300 tokens, temperature 0.8):",
        "-" * 40, sample, "-" * 40,
        "next:", *(f"  {command}" for command in next_steps),
    ])


def _text_to_score(track: str):
    """A text file the run's data preparation left on disk (the track's raw text), for the epilogue's `eval loss`
    example; None when there is none (gpt2-124m's shards keep no text)."""
    candidates = {"shakespeare-char": ["shakespeare_char/input.txt"],
                  "tinystories": ["tinystories_sample_trimmed/sample.txt", "tinystories_sample/sample.txt"]}
    for name in candidates.get(track, []):
        if (data_dir() / name).is_file():
            return data_dir() / name
    return None


def cli(argv=None) -> None:
    """`python -m tinylm.train`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
