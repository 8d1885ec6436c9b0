"""A blind pairwise reading of two story models' replies: does a verifier's pass match what a reader prefers?

    python scripts/blind_reading.py sheet A_RUN B_RUN --out reading.json    # the pairs, in a shuffled order
    python scripts/blind_reading.py tally reading.json CHOICES.txt          # the reader's choices, unblinded

`sheet` answers the first --pairs test instructions of the story task greedily with both runs' best.pt, puts each
pair in an order drawn by --seed, and writes the record (the key and the verifier's verdicts included) and, beside
it, a sheet for the reader with the instruction and replies "1" and "2" only. The reader writes one line per pair:
1, 2 or = (no preference). `tally` adds the choices to the record and prints the counts by model, how often the
reader chose the reply the verifier passed where it passed only one, and a sign test on the preferences.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinylm.posttrain.replies import greedy_completions  # noqa: E402
from tinylm.posttrain.tasks.stories import Stories  # noqa: E402
from tinylm.train.checkpoint import load_model  # noqa: E402


def sheet(runs: list[str], out: Path, pairs: int, seed: int) -> None:
    task = Stories("cpu")
    task.prepare(runs[0], "cpu", "grpo")  # the verifier the runs' SFT start names
    problems = task.held_out(0, pairs).test
    replies, verdicts = {}, {}
    for run in runs:
        model, tokenizer, _ = load_model(run)
        completions = greedy_completions(model.eval(), tokenizer, task, problems)
        replies[run] = task.reply_texts(tokenizer, completions)
        verdicts[run] = [s.correct for s in task.score_completions(tokenizer, problems, completions)]
    rng = random.Random(seed)
    items = []
    for i, problem in enumerate(problems):
        order = runs[:] if rng.random() < 0.5 else runs[::-1]
        items.append({"instruction": problem.instruction, "order": order,
                      "replies": [replies[run][i] for run in order], "passed": [verdicts[run][i] for run in order]})
    out.write_text(json.dumps({"runs": runs, "seed": seed, "pairs": items}, indent=1) + "\n")
    lines = [f"{n}. {item['instruction']}\n   1: {item['replies'][0]}\n   2: {item['replies'][1]}\n"
             for n, item in enumerate(items, 1)]
    out.with_suffix(".sheet.txt").write_text("\n".join(lines))
    print(f"wrote {out} (the key) and {out.with_suffix('.sheet.txt')} (for the reader)")


def tally(record_path: Path, choices_path: Path) -> None:
    record = json.loads(record_path.read_text())
    choices = [line.strip() for line in choices_path.read_text().splitlines() if line.strip()]
    if len(choices) != len(record["pairs"]) or not set(choices) <= {"1", "2", "="}:
        raise SystemExit(f"{choices_path}: one line of 1, 2 or = per pair ({len(record['pairs'])}) is needed")
    counts = dict.fromkeys([*record["runs"], "no preference"], 0)
    split = {"pairs": 0, "reader_agrees": 0, "reader_disagrees": 0}  # pairs where the verifier passed one reply
    for item, choice in zip(record["pairs"], choices):
        item["preferred"] = "no preference" if choice == "=" else item["order"][int(choice) - 1]
        counts[item["preferred"]] += 1
        if item["passed"][0] != item["passed"][1]:
            split["pairs"] += 1
            passing = item["order"][item["passed"].index(True)]
            if item["preferred"] != "no preference":
                split["reader_agrees" if item["preferred"] == passing else "reader_disagrees"] += 1
    first, second = (counts[run] for run in record["runs"])
    record["preferred"], record["verifier_passed_one"] = counts, split
    record["sign_test_p"] = sign_test(first, second)
    record_path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    print(counts, split, f"sign test p = {record['sign_test_p']:.2f}")


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (ties left out): the chance of a split at least this uneven were both equally good."""
    n = wins + losses
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("sheet")
    make.add_argument("runs", nargs=2)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--pairs", type=int, default=30)
    make.add_argument("--seed", type=int, default=0)
    count = commands.add_parser("tally")
    count.add_argument("record", type=Path)
    count.add_argument("choices", type=Path)
    args = parser.parse_args()
    if args.command == "sheet":
        sheet(args.runs, args.out, args.pairs, args.seed)
    else:
        tally(args.record, args.choices)


if __name__ == "__main__":
    main()
