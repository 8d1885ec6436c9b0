"""Notebooks 8a and 8b's ablation from the command line, on the TinyStories track: GPT-2's block -> +no-bias ->
+RMSNorm -> +RoPE -> +SwiGLU -> +GQA (`--part block`), and the dense Llama block -> +MoE under three balancing modes
(`--part moe`), every arm at several seeds for the same number of optimizer steps (`--seconds S`: equal seconds).

    python scripts/architecture_ablation.py --part block --steps 3000 --n-embd 96 --block-size 64 --batch-size 8
    python scripts/architecture_ablation.py --part moe --steps 3000 --n-embd 96 --block-size 64 --batch-size 8

Prints one line per run, then the notebooks' table and verdicts (tinylm.course.ablation) on the test split they hold
out.
"""

from __future__ import annotations

import argparse
import dataclasses

import tinylm
from tinylm.cli.errors import run_cli
from tinylm.course.ablation import (
    ablation_table,
    architecture_chain,
    hold_out_test,
    mixture_chain,
    train_arms,
    verdicts,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", default="all", choices=["block", "moe", "all"],
                        help="block: notebook 8a's dense chain; moe: notebook 8b's dense block and mixtures; all: "
                             "the whole chain (default)")
    parser.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "gpu"])
    parser.add_argument("--seconds", type=float, default=None, help="training seconds per run (default: max_steps)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per run (default: the recipe's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="a verdict needs at least 3 (default: 0 1 2)")
    parser.add_argument("--warmup", type=int, default=None, help="warmup steps (default: the recipe's)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the recipe's)")
    parser.add_argument("--n-embd", type=int, default=None, help="model width (default: the recipe's)")
    parser.add_argument("--block-size", type=int, default=None, help="context in tokens (default: the recipe's)")
    parser.add_argument("--batch-size", type=int, default=None, help="windows per step (default: the recipe's)")
    parser.add_argument("--arms", nargs="+", help="train only these arms (names as in the table, e.g. GPT-2 +GQA)")
    args = parser.parse_args()
    device = tinylm.resolve_device()
    tinylm.configure_backend(device)
    track = tinylm.get_track("tinystories")
    data = track.prepare(args.profile)
    preset, recipe = track.recipe(args.profile)
    preset = dataclasses.replace(preset, **{field: value for field, value in
                                            (("n_embd", args.n_embd), ("block_size", args.block_size))
                                            if value is not None})
    base = tinylm.train.recipes.build_model_config(preset, data.tokenizer, track.vocab_multiple)
    recipe = dataclasses.replace(recipe, max_seconds=args.seconds, eval_interval=0, log_interval=5,
                                 max_steps=recipe.max_steps if args.steps is None else args.steps,
                                 warmup_steps=recipe.warmup_steps if args.warmup is None else args.warmup,
                                 learning_rate=recipe.learning_rate if args.lr is None else args.lr,
                                 batch_size=recipe.batch_size if args.batch_size is None else args.batch_size)
    arms = {"block": lambda: architecture_chain(base, balancing=()), "moe": lambda: mixture_chain(base),
            "all": lambda: architecture_chain(base)}[args.part]()
    if args.arms:
        unknown = set(args.arms) - {arm.name for arm in arms}
        if unknown:
            parser.error(f"unknown arm(s) {', '.join(sorted(unknown))}: choose from {', '.join(a.name for a in arms)}")
        # An arm whose baseline is left out has nothing to be compared with: it is shown, not judged.
        arms = [arm if arm.baseline in args.arms else dataclasses.replace(arm, baseline=None)
                for arm in arms if arm.name in args.arms]
    train, test = hold_out_test(data.train, len(data.val), boundary=data.tokenizer.eot_token)  # as 8a and 8b cut it
    runs = train_arms(arms, args.seeds, recipe, train, data.val, device=device, tokenizer=data.tokenizer,
                      test_data=test)
    print(ablation_table(arms, runs, split="test"))
    print("\n".join(verdicts(arms, runs, split="test")))


if __name__ == "__main__":
    run_cli(lambda _argv: main())  # an anticipated error: one line, no traceback
