"""The speedrun race one seed per process, so that the seeds of both CPU kinds can run at once on separate cores of a
big machine, and a summary of their results (docs/notes/2026-11-26-laptop-speedrun.md).

    OMP_NUM_THREADS=2 taskset -c 0,1 python scripts/speedrun_race_by_seed.py run --seed 0 > native-0.jsonl
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 OMP_NUM_THREADS=2 taskset -c 2,3 \
        python scripts/speedrun_race_by_seed.py run --seed 0 > avx2-0.jsonl
    python scripts/speedrun_race_by_seed.py summarize native-*.jsonl

`run` races, at one seed, what `python -m tinylm.bench speedrun --track shakespeare-char` races, then the speedrun
recipe with a second block instead of its batch of 32, printing JSON lines; `summarize` prints each recipe's spread
over seeds and, against each recipe above it, the verdicts of the course's rule (`tinylm.eval.uncertainty.told_apart`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tinylm  # noqa: E402
from tinylm.bench.speedrun import Race, RaceRun, race  # noqa: E402
from tinylm.eval.uncertainty import spread, told_apart  # noqa: E402
from tinylm.train.muon import newton_schulz_dtype  # noqa: E402
from tinylm.train.recipes import get_track  # noqa: E402

TRACK, TARGET, SECONDS = "shakespeare-char", 1.886, 70.0
RECIPES = ("default", "speedrun", "second-block")
SECOND_BLOCK = {"n_layer": 2}  # in place of the speedrun recipe's own changes


def run(seed: int, seconds: float) -> None:
    note = tinylm.configure_backend("cpu")  # keeps an OMP_NUM_THREADS from the environment
    track = get_track(TRACK)
    print(json.dumps({"seed": seed, "capability": torch.backends.cpu.get_cpu_capability(), "threads":
                      torch.get_num_threads(), "note": note, "torch": torch.__version__,
                      "newton_schulz": str(newton_schulz_dtype("cpu")), "speedrun": track.speedrun_changes("cpu")}),
          flush=True)

    def show(name: str | None):
        return lambda result, done, total: print(json.dumps(
            {"recipe": name or result.recipe, "seed": result.seed, "val_loss": result.val_loss, "steps": result.steps,
             "seconds": result.curve[-1][0], "seconds_to_target": result.seconds_to_target}), flush=True)

    order = ["default", "speedrun"] if seed % 2 == 0 else ["speedrun", "default"]
    plan = Race(TRACK, "cpu", target=TARGET, seconds=seconds, device="cpu")
    race(plan, seeds=[seed], recipes=order, on_run=show(None))
    track.speedruns["cpu"] = SECOND_BLOCK  # the track is this process's own: race() reads the recipe from it
    print(json.dumps({"second-block": track.speedrun_changes("cpu")}), flush=True)
    race(plan, seeds=[seed], recipes=["speedrun"], on_run=show("second-block"))


def summarize(files: list[Path]) -> None:
    runs: dict[str, list[RaceRun]] = {name: [] for name in RECIPES}
    for file in files:
        for line in file.read_text().splitlines():
            record = json.loads(line)
            if "capability" in record:
                print(f"{file.name}: {record['capability']}, {record['threads']} threads, torch {record['torch']}, "
                      f"Newton-Schulz in {record['newton_schulz']}, speedrun {record['speedrun']}")
            elif "second-block" in record:
                print(f"{file.name}: second-block {record['second-block']}")
            elif "recipe" in record:
                runs[record["recipe"]].append(RaceRun(record["recipe"], record["seed"], [], record["val_loss"],
                                                      record["steps"], record["seconds_to_target"]))
    for index, name in enumerate(RECIPES):
        arm = sorted(runs[name], key=lambda r: r.seed)
        if not arm:
            continue
        losses = [r.val_loss for r in arm]
        times = [r.seconds_to_target for r in arm]
        reached = [t for t in times if t is not None]
        to_target = (f"{spread(reached).format(1)} s to {TARGET}" if len(reached) == len(arm)
                     else f"{len(reached)} of {len(arm)} seeds reached {TARGET}")
        print(f"{name:12s} seeds {' '.join(str(r.seed) for r in arm)}: val loss {spread(losses).format(4)}, "
              f"{min(r.steps for r in arm):,}-{max(r.steps for r in arm):,} steps, {to_target}")
        for earlier in RECIPES[:index]:  # each verdict by the rule, on both measures
            other = runs[earlier]
            other_times = [r.seconds_to_target for r in other]
            loss_verdict = told_apart(losses, [r.val_loss for r in other])
            time_verdict = None not in times + other_times and told_apart(times, other_times)
            print(f"{'':12s} against {earlier}: loss {'' if loss_verdict else 'not '}told apart, seconds to {TARGET} "
                  f"{'' if time_verdict else 'not '}told apart")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    one = commands.add_parser("run", help="one seed's race, JSON lines on standard output")
    one.add_argument("--seed", type=int, required=True)
    one.add_argument("--seconds", type=float, default=SECONDS, help="seconds of training per run (default: 70)")
    summary = commands.add_parser("summarize", help="the rows of several seeds' JSON lines")
    summary.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    if args.command == "run":
        run(args.seed, args.seconds)
    else:
        summarize(args.files)


if __name__ == "__main__":
    main()
