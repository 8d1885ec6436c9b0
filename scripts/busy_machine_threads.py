"""A training step's time with 1 and 2 PyTorch threads, with and without a CPU-bound process beside it: why
`tinylm.configure_backend` picks threads by load (docs/notes/2026-11-25-threads-on-a-busy-machine.md).

    python scripts/busy_machine_threads.py [--rounds 3]

The shape is the tinystories cpu recipe's (tinylm.bench.measure.PRESETS); the conditions alternate within each round.
"""

import argparse
import statistics
import subprocess
import sys
import time

import torch

from tinylm.bench.measure import BATCH_SIZES, PRESETS, random_batch, training_step
from tinylm.config import TrainConfig
from tinylm.model.gpt import GPT
from tinylm.runtime import keep_freed_memory
from tinylm.train.optim import build_optimizer

STEPS = 5  # timed steps per condition and round, after one untimed step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    keep_freed_memory()
    cpu = torch.device("cpu")
    config, batch_size = PRESETS["tinystories-cpu"], BATCH_SIZES["tinystories-cpu"]
    torch.manual_seed(0)
    model = GPT(config)
    optimizer = build_optimizer(model, TrainConfig(batch_size=batch_size), cpu)
    step = training_step(model, optimizer, *random_batch(config, batch_size, cpu), cpu, torch.float32)
    step()
    times: dict[tuple[bool, int], list[float]] = {}
    for _ in range(args.rounds):
        for hog in (False, True):
            busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
            time.sleep(0.3)
            for threads in (2, 1):
                torch.set_num_threads(threads)
                step()
                start = time.perf_counter()
                for _ in range(STEPS):
                    step()
                times.setdefault((hog, threads), []).append((time.perf_counter() - start) / STEPS * 1e3)
            if busy is not None:
                busy.kill()
                busy.wait()
    for (hog, threads), values in sorted(times.items()):
        beside = "beside one CPU hog" if hog else "no hog           "
        median = statistics.median(values)
        print(f"{beside} | {threads} thread(s) | best {min(values):7.1f} ms | median {median:7.1f} ms "
              f"| worst {max(values):7.1f} ms")


if __name__ == "__main__":
    main()
