"""The probes behind the speedrun recipes (README, "The laptop speedrun"): one run per line, each the cpu recipe of a
track with some GPTConfig, ModelShape or TrainConfig fields changed, for a number of steps or seconds of training.

    python scripts/speedrun_probes.py --track shakespeare-char --steps 2500 \
        --probe base --probe muon optimizer=muon --probe muon+2L optimizer=muon n_layer=2
    python scripts/speedrun_probes.py --track shakespeare-char --seconds 30 --probe muon-ctx128 optimizer=muon \
        block_size=128

A probe is a name and field=value pairs (values are read as Python literals, or else as text). A field of
ModelShape changes the shape, of GPTConfig the model, of TrainConfig the training. Each probe prints one line: the
final validation loss over the whole split, the steps and the milliseconds per step. Equal-steps probes do not
depend on how busy the machine is (their milliseconds per step do); equal-seconds probes compare what a learner
waits for, on a quiet machine. One seed each: a probe is a hint, the record table of notebook 12 and
`python -m tinylm.bench speedrun` (several seeds) are the measurements.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinylm  # noqa: E402
from tinylm.config import GPTConfig, ModelShape, TrainConfig  # noqa: E402
from tinylm.model.gpt import GPT  # noqa: E402
from tinylm.train.recipes import build_model_config, get_track  # noqa: E402
from tinylm.train.trainer import Trainer  # noqa: E402


def fields_of(cls) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def probe(track_name: str, changes: dict, steps: int | None, seconds: float | None, seed: int) -> str:
    track = get_track(track_name)
    data = track.prepare("cpu")
    shape, train_config = track.recipe("cpu")
    shape = dataclasses.replace(shape, **{k: v for k, v in changes.items() if k in fields_of(ModelShape)})
    train_config = dataclasses.replace(
        train_config, max_steps=steps or train_config.max_steps, max_seconds=seconds, eval_interval=0,
        sample_interval=0, log_interval=1000, seed=seed,
        **{k: v for k, v in changes.items() if k in fields_of(TrainConfig)})
    model_fields = {k: v for k, v in changes.items() if k in fields_of(GPTConfig) - fields_of(ModelShape)}
    config = dataclasses.replace(build_model_config(shape, data.tokenizer, track.vocab_multiple), **model_fields)
    torch.manual_seed(seed)
    trainer = Trainer(GPT(config), train_config, data.train, data.val, tokenizer=data.tokenizer, device="cpu",
                      callbacks=[])
    final = trainer.fit()
    step_ms = trainer.elapsed / trainer.step * 1e3
    return f"val loss {final['val_loss']:.4f} after {trainer.step:,} steps, {step_ms:.1f} ms/step"


def literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):  # muon, wsd, relu2: the text itself
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--track", choices=["shakespeare-char", "tinystories"], default="shakespeare-char")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--steps", type=int)
    budget.add_argument("--seconds", type=float)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--probe", nargs="+", action="append", required=True, metavar="NAME [FIELD=VALUE ...]")
    args = parser.parse_args()
    known = fields_of(ModelShape) | fields_of(GPTConfig) | fields_of(TrainConfig)
    tinylm.configure_backend("cpu")
    for name, *pairs in args.probe:
        changes = {key: literal(value) for key, value in (pair.split("=", 1) for pair in pairs)}
        unknown = sorted(set(changes) - known)
        if unknown:
            sys.exit(f"error: {name}: no field {unknown}; fields of ModelShape, GPTConfig and TrainConfig only")
        print(f"{name:<24} {probe(args.track, changes, args.steps, args.seconds, args.seed)}", flush=True)


if __name__ == "__main__":
    main()
