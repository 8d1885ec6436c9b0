"""Reproduce the sweep behind the shakespeare-char cpu recipe: validation loss at equal wall-clock.

    python scripts/shakespeare_sweep.py [--seconds 70] [--only 1x128,4x128]

Each arm (`ARMS`, those of docs/notes/2026-11-21-cpu-recipes.md) trains a fresh model with the cpu recipe for the same
seconds, then scores the whole validation split. Run it on an otherwise idle machine: a busy one gives every arm fewer
steps. Runs go to $TINYLM_RUNS_DIR (else runs/) under sweep-shakespeare/.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from tqdm.auto import tqdm

import tinylm
from tinylm.train.recipes import build_model_config

ARMS = {  # name -> (GPTConfig overrides, TrainConfig overrides)
    "1x128": ({"n_layer": 1}, {}),
    "2x128": ({"n_layer": 2}, {}),
    "3x128": ({"n_layer": 3}, {}),
    "4x128": ({"n_layer": 4}, {}),
    "1x96": ({"n_layer": 1, "n_embd": 96}, {}),
    "1x192": ({"n_layer": 1, "n_embd": 192}, {}),
    "4x128-lr1e-3": ({"n_layer": 4}, {"learning_rate": 1e-3}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=70.0, help="training seconds per arm")
    parser.add_argument("--only", help=f"comma-separated arms (default: all of {', '.join(ARMS)})")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(ARMS)
    unknown = [name for name in names if name not in ARMS]
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")

    track = tinylm.get_track("shakespeare-char")
    preset, recipe = track.recipe("cpu")
    data = track.prepare("cpu")
    out_root = tinylm.paths.runs_dir() / "sweep-shakespeare"
    rows = []
    for name in tqdm(names, desc=f"arms of {args.seconds:.0f} s"):
        shape, schedule = ARMS[name]
        model_cfg = build_model_config(dataclasses.replace(preset, **shape), data.tokenizer, track.vocab_multiple)
        train_cfg = dataclasses.replace(recipe, max_seconds=args.seconds, eval_interval=0, sample_interval=0,
                                        log_interval=10**9, **schedule)
        run_dir = out_root / name
        for stale in ("metrics.jsonl", "best.pt", "last.pt"):
            (run_dir / stale).unlink(missing_ok=True)
        torch.manual_seed(train_cfg.seed)
        trainer = tinylm.Trainer(tinylm.GPT(model_cfg), train_cfg, data.train, data.val, out_dir=run_dir,
                                 tokenizer=data.tokenizer, sample_prompt=track.sample_prompt)
        final = trainer.fit()
        rows.append((name, trainer.model.num_parameters(), trainer.step, final["val_loss"]))

    print(f"\nshakespeare-char, cpu recipe, {args.seconds:.0f} s per arm, {torch.get_num_threads()} threads")
    print("| arm (layers x width) | parameters | steps | validation loss |")
    print("|---|---|---|---|")
    for name, params, steps, val_loss in rows:
        print(f"| {name} | {params:,} | {steps:,} | {val_loss:.4f} |")
    print(f"runs in {out_root}; plot one: "
          "tinylm.course.plotting.plot_losses(tinylm.course.plotting.read_metrics(RUN / \"metrics.jsonl\"))")


if __name__ == "__main__":
    main()
