"""The probes behind the speedrun recipes (docs/notes/2026-11-26-laptop-speedrun.md): one line per probe, each the cpu
recipe of a track with some GPTConfig, ModelShape or TrainConfig fields changed, for a number of steps or seconds of
training, at one or more seeds.

    python scripts/speedrun_probes.py --track shakespeare-char --steps 2500 \
        --probe base --probe muon optimizer=muon --probe muon+2L optimizer=muon n_layer=2
    python scripts/speedrun_probes.py --track shakespeare-char --seconds 70 --seeds 0 1 2 --lockstep \
        --probe speedrun optimizer=muon batch_size=32 --probe ns3 optimizer=muon batch_size=32 muon_ns_steps=3

A probe is a name and field=value pairs (Python literals, else text). Each prints its validation loss, steps, ms per
step and seconds to --target over seeds, and whether it beats the first probe beyond the seed spread. Under --lockstep
the probes of a seed train in turns of --eval-interval steps, so that a busy spell of a shared machine slows all alike.
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
from tinylm.bench.speedrun import seconds_to_target, validation_curve  # noqa: E402
from tinylm.config import GPTConfig, ModelShape, TrainConfig  # noqa: E402
from tinylm.eval.uncertainty import separated, spread  # noqa: E402
from tinylm.model.gpt import GPT  # noqa: E402
from tinylm.train.progress import TRAINING_TIME  # noqa: E402
from tinylm.train.recipes import build_model_config, get_track  # noqa: E402
from tinylm.train.trainer import Trainer  # noqa: E402


def fields_of(cls) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def make_trainer(track_name: str, data, changes: dict, steps: int | None, seconds: float | None, seed: int,
                 eval_interval: int, records: list) -> Trainer:
    """A Trainer of the track's cpu recipe with `changes`, for `steps` or `seconds` of training, at `seed`."""
    track = get_track(track_name)
    shape, train_config = track.recipe("cpu")
    shape = dataclasses.replace(shape, **{k: v for k, v in changes.items() if k in fields_of(ModelShape)})
    train_config = dataclasses.replace(
        train_config, max_steps=steps or train_config.max_steps, max_seconds=seconds, eval_interval=eval_interval,
        sample_interval=0, log_interval=10**9, seed=seed,
        **{k: v for k, v in changes.items() if k in fields_of(TrainConfig)})
    model_fields = {k: v for k, v in changes.items() if k in fields_of(GPTConfig) - fields_of(ModelShape)}
    config = dataclasses.replace(build_model_config(shape, data.tokenizer, track.vocab_multiple), **model_fields)
    torch.manual_seed(seed)
    return Trainer(GPT(config), train_config, data.train, data.val, tokenizer=data.tokenizer, device="cpu",
                   callbacks=[records.append])


def finished(trainer: Trainer) -> bool:
    cfg = trainer.cfg
    return trainer.step >= cfg.max_steps or (cfg.max_seconds is not None and trainer.elapsed >= cfg.max_seconds)


def run_probes(args, probes: list[tuple[str, dict]]) -> dict[str, list[tuple[float, int, float, float | None]]]:
    """Each probe at each seed: (final val loss, steps, ms per step, seconds to the target or None)."""
    data = get_track(args.track).prepare("cpu")
    results: dict[str, list] = {name: [] for name, _ in probes}
    for seed in args.seeds:
        records = {name: [] for name, _ in probes}
        # with --lockstep the end of every turn is an evaluation (its "final" record), so none in between
        trainers = {name: make_trainer(args.track, data, changes, args.steps, args.seconds, seed,
                                       0 if args.lockstep else args.eval_interval, records[name])
                    for name, changes in probes}
        if args.lockstep:  # turns of --eval-interval steps, the order reversed every turn
            turn = 0
            while not all(finished(t) for t in trainers.values()):
                for name in (list(trainers) if turn % 2 == 0 else list(trainers)[::-1]):
                    if not finished(trainers[name]):
                        trainers[name].fit(stop_after=args.eval_interval)
                turn += 1
        else:
            for trainer in trainers.values():
                trainer.fit()
        for name, trainer in trainers.items():
            curve = validation_curve(records[name])
            results[name].append((curve[-1][1], trainer.step, trainer.elapsed / trainer.step * 1e3,
                                  seconds_to_target(curve, args.target)))
    return results


def describe(runs: list[tuple[float, int, float, float | None]], target: float) -> str:
    losses = spread([run[0] for run in runs])
    steps = sorted(run[1] for run in runs)
    reached = [run[3] for run in runs if run[3] is not None]
    to_target = (f"{spread(reached).format(1)} s to {target}" if len(reached) == len(runs)
                 else f"{len(reached)} of {len(runs)} seeds reached {target}")
    return (f"val loss {losses.format(4)} after {steps[0]:,}-{steps[-1]:,} steps, "
            f"{spread([run[2] for run in runs]).mean:.1f} ms/step, {to_target}")


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
    budget.add_argument("--seconds", type=float, help="seconds of training each (evaluations not counted)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337])
    parser.add_argument("--lockstep", action="store_true", help="train the probes of a seed in turns (see above)")
    parser.add_argument("--eval-interval", type=int, default=100, help="steps between whole-split evaluations, "
                        "which time the target; with --lockstep also the steps of a turn")
    parser.add_argument("--target", type=float, default=1.886, help="the validation loss whose seconds are reported")
    parser.add_argument("--probe", nargs="+", action="append", required=True, metavar="NAME [FIELD=VALUE ...]")
    args = parser.parse_args()
    known = fields_of(ModelShape) | fields_of(GPTConfig) | fields_of(TrainConfig)
    probes = []
    for name, *pairs in args.probe:
        changes = {key: literal(value) for key, value in (pair.split("=", 1) for pair in pairs)}
        unknown = sorted(set(changes) - known)
        if unknown:
            sys.exit(f"error: {name}: no field {unknown}; fields of ModelShape, GPTConfig and TrainConfig only")
        probes.append((name, changes))
    if note := tinylm.configure_backend("cpu"):
        print(note)
    budget = f"{args.steps:,} steps" if args.steps else f"{args.seconds:g} s of training ({TRAINING_TIME})"
    print(f"{args.track}, {budget}, seeds {' '.join(map(str, args.seeds))}, {torch.get_num_threads()} thread(s)"
          f"{', in lockstep' if args.lockstep else ''}; CPU capability {torch.backends.cpu.get_cpu_capability()}")
    results = run_probes(args, probes)
    first = probes[0][0]
    for name, _ in probes:
        verdict = ""
        if name != first:
            ours, theirs = [run[0] for run in results[name]], [run[0] for run in results[first]]
            gap = spread(ours).mean - spread(theirs).mean
            if not separated(ours, theirs):
                verdict = f"; vs {first}: {gap:+.4f}, within the seed spread"
            else:
                verdict = f"; vs {first}: {gap:+.4f}, {'better' if gap < 0 else 'worse'} beyond the seed spread"
        print(f"{name:<24} {describe(results[name], args.target)}{verdict}", flush=True)


if __name__ == "__main__":
    main()
