"""DPO on the preference set at two betas, each at several seeds, on top of one SFT run of the instruction set:
docs/notes/2026-11-25-post-training-runs.md.

    python -m tinylm.sft --task instruct --profile cpu --out runs/sft-instruct-cpu
    python scripts/dpo_betas.py --base runs/sft-instruct-cpu --betas 0.1 0.5 --seeds 1337 1

Trains (or reads, where finished) runs/dpo-cpu-bB-sS with `python -m tinylm.dpo` per beta and seed, then prints per
beta the held-out `MEASURES` over seeds and the verdicts of tinylm.eval.uncertainty.compare.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from tinylm.eval.uncertainty import compare, spread

MEASURES = {  # name -> where in a stage of dpo_eval.json; every one is better higher
    "held-out preference accuracy": ("preference", "test", "accuracy"),
    "mean margin": ("preference", "test", "margin"),
    "replies closer to chosen": ("pass_rate",),
    "reply token F1 vs chosen": ("figures", "f1_chosen"),
}
INCOMPARABLE = {"mean margin"}  # an implicit reward is beta x a log-ratio: its scale differs between betas


def run_folder(runs: Path, beta: float, seed: int) -> Path:
    return runs / f"dpo-cpu-b{beta:g}-s{seed}"


def measured(report: dict, stage: str, where: tuple[str, ...]) -> float:
    found = report["preference"][stage] if where[0] == "preference" else report[stage]
    for key in where[1:] if where[0] == "preference" else where:
        found = found[key]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="runs/sft-instruct-cpu", help="the SFT run DPO starts from")
    parser.add_argument("--betas", type=float, nargs="+", default=[0.1, 0.5])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1337, 1])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    args = parser.parse_args()
    reports = {}
    for beta in args.betas:
        for seed in args.seeds:
            out = run_folder(args.runs, beta, seed)
            if not (out / "dpo_eval.json").is_file() or "after" not in json.loads((out / "dpo_eval.json").read_text()):
                subprocess.run([sys.executable, "-m", "tinylm.dpo", "--task", "preference", "--profile", "cpu",
                                "--base", args.base, "--set", f"beta={beta}", "--seed", str(seed), "--out", str(out),
                                "--overwrite"], check=True)
            reports.setdefault(beta, []).append(json.loads((out / "dpo_eval.json").read_text()))
    for beta, runs in reports.items():
        print(f"beta {beta:g} ({len(runs)} seeds, {runs[0]['preference']['after']['test']['pairs']} held-out pairs, "
              f"{runs[0]['after']['problems']} prompts):")
        for name, where in MEASURES.items():
            before = spread([measured(r, "before", where) for r in runs])
            after = spread([measured(r, "after", where) for r in runs])
            print(f"  {name}: {before.format(3)} before -> {after.format(3)} after")
        print(f"  seconds of DPO training: {spread([r['train_seconds'] for r in runs]).format(0)}; wall: "
              f"{spread([r['wall_seconds'] for r in runs]).format(0)}")
    if len(reports) == 2:
        (beta_a, a), (beta_b, b) = reports.items()
        for name, where in MEASURES.items():
            if name not in INCOMPARABLE:
                print(compare(f"beta {beta_a:g}", [measured(r, "after", where) for r in a], f"beta {beta_b:g}",
                              [measured(r, "after", where) for r in b], lower_is_better=False, metric=name))


if __name__ == "__main__":
    main()
