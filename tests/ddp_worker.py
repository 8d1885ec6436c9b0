"""Tiny training runs for the DDP tests: `torchrun --nproc_per_node=2 tests/ddp_worker.py ...` or plain `python`.

The arguments describe one run, or several separated by `--then`, made one after another in the same world (starting
one costs more than any of these runs). Rank 0 saves what the test compares (the gradients of the first step, or the
final weights and validation loss) to --out. With --interrupt-rank, that rank alone gets SIGINT during its third
forward pass, or with --between-steps in the evaluation after step 3 (--ctrl-c 2: twice, the second Ctrl-C that
stops at once); each rank that stops writes the step it stopped after to <out>.rank<r>.interrupted, and leaves
without a final barrier, as python -m tinylm.train does. With --first-record-rank, that rank alone is past
FIRST_RECORD_SECONDS from the start (the others never are), the trainer's step_stats all-reduce as GRPO's do, and
each rank writes the steps of its train records to <out>.rank<r>.records. With --sharding-bench, the run is bench
sharding's comparison of DDP, ZeRO-1 and FSDP (tinylm.bench.measure.compare_sharding), twice, whose results rank 0
saves.
"""

import argparse
import gc
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

import tinylm.train.trainer as trainer_module
from tinylm.bench.measure import compare_sharding
from tinylm.config import GPTConfig, TrainConfig
from tinylm.distributed import all_reduce_sum, run_in_world
from tinylm.model.gpt import GPT
from tinylm.train.trainer import Trainer

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--batch-size", type=int, required=True)
parser.add_argument("--accum", type=int, default=1)
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--dropout", type=float, default=0.0)
parser.add_argument("--optimizer", default="adamw")
parser.add_argument("--zero", action="store_true", help="ZeRO-1: AdamW's moments sharded over the ranks")
parser.add_argument("--stop-after", type=int)
parser.add_argument("--run-dir")
parser.add_argument("--resume")
parser.add_argument("--capture-grads", action="store_true", help="save the first step's gradients and stop")
parser.add_argument("--uneven-targets", action="store_true",
                    help="targets after a token divisible by 3 are -1: micro-batches and ranks count unequal numbers")
parser.add_argument("--poison-rank", type=int, help="this rank's weights become NaN after DDP's initial broadcast")
parser.add_argument("--interrupt-rank", type=int, help="this rank alone gets SIGINT during its third forward pass")
parser.add_argument("--between-steps", action="store_true", help="instead: in the evaluation after step 3")
parser.add_argument("--ctrl-c", type=int, default=1, help="how many SIGINTs the interrupted rank gets at once")
parser.add_argument("--sharding-bench", action="store_true", help="instead: compare_sharding at --batch-size")
parser.add_argument("--first-record-rank", type=int,
                    help="this rank alone is past FIRST_RECORD_SECONDS at once; step_stats do a collective")
torch.set_num_threads(1)
FIRST_RECORD_SECONDS = trainer_module.FIRST_RECORD_SECONDS


class TrainerWithCollectiveStats(Trainer):
    """step_stats as GRPOTrainer's: a collective, so every rank must make its train records at the same steps."""

    def step_stats(self) -> dict:
        (ranks,) = all_reduce_sum([1.0], self.device)
        return {"ranks": ranks}


def work(world, args) -> None:
    """One run, as a command line's main() runs it: inside run_in_world, which leaves the process group only after
    the runs return, so their trainers and DDP reducers are gone before the group is destroyed."""
    if args.sharding_bench:
        config = GPTConfig(vocab_size=512, block_size=64, n_layer=1, n_head=2, n_embd=64)
        results = [compare_sharding(config, args.batch_size, rounds=1, loss_steps=2, device="cpu", dtype="float32")
                   for _ in range(2)]  # two measurements: a peak measured on the CPU varies from run to run
        if world.is_main:
            torch.save({"result": results}, args.out)
        return
    tokens = np.random.default_rng(0).integers(0, 37, 4000).astype(np.uint16)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=2, n_embd=32, dropout=args.dropout))
    cfg = TrainConfig(batch_size=args.batch_size, grad_accum_steps=args.accum, max_steps=args.steps, warmup_steps=1,
                      learning_rate=3e-3, min_lr=3e-4, eval_interval=3 if args.between_steps else 0, log_interval=100,
                      eval_batch_size=64, seed=0, dtype="float32", grad_clip=None if args.capture_grads else 1.0,
                      optimizer=args.optimizer, zero=args.zero)
    evaluators = {}
    if args.interrupt_rank == world.rank and args.between_steps:

        def ctrl_c(model):
            for _ in range(args.ctrl_c):
                os.kill(os.getpid(), signal.SIGINT)
            return {}

        evaluators["ctrl_c"] = ctrl_c
    trainer_class, trainer_module.FIRST_RECORD_SECONDS = Trainer, FIRST_RECORD_SECONDS
    if args.first_record_rank is not None:
        trainer_module.FIRST_RECORD_SECONDS = 0.0 if world.rank == args.first_record_rank else 1e9
        trainer_class = TrainerWithCollectiveStats
    trainer = trainer_class(model, cfg, tokens, tokens[:500], out_dir=args.run_dir, device="cpu", world=world,
                            evaluators=evaluators)
    recorded_steps = []  # the steps at which this rank made a train record (only rank 0 emits them)
    log_training = trainer._log_training
    trainer._log_training = lambda *a: (recorded_steps.append(trainer.step), log_training(*a))
    if args.resume:
        trainer.resume(args.resume)
    if args.uneven_targets:
        draw = trainer.sampler.next_batch

        def some_targets_not_counted(device):
            x, y = draw(device)
            return x, y.masked_fill(x % 3 == 0, -1)  # by content: the same targets in one process and in two

        trainer.sampler.next_batch = some_targets_not_counted
    if args.poison_rank == world.rank:
        with torch.no_grad():
            trainer.model.lm_head.weight[0, 0] = float("nan")
    val_loss = None
    if args.interrupt_rank == world.rank and not args.between_steps:
        forwards = []

        def sigint_on_the_third_forward(module, inputs, output):
            forwards.append(1)
            if len(forwards) == 3:
                os.kill(os.getpid(), signal.SIGINT)

        trainer.model.register_forward_hook(sigint_on_the_third_forward)
    if args.capture_grads:
        grads = {}
        step = trainer.optimizer.step

        def capture_then_step(*a, **k):
            grads.update({n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()})
            return step(*a, **k)

        trainer.optimizer.step = capture_then_step
        trainer._optimizer_step()
        result = grads
    else:
        try:
            val_loss = trainer.fit(stop_after=args.stop_after)["val_loss"]
        except KeyboardInterrupt:
            Path(f"{args.out}.rank{world.rank}.interrupted").write_text(str(trainer.step))
            raise SystemExit(0) from None  # teardown without a barrier: a rank that did not stop here fails
        result = trainer.model.state_dict()
    if args.first_record_rank is not None:
        Path(f"{args.out}.rank{world.rank}.records").write_text(" ".join(map(str, recorded_steps)))
    if world.is_main:
        torch.save({"result": result, "val_loss": val_loss, "world_size": world.size,
                    "accum": trainer.grad_accum_steps}, args.out)


def runs(argv: list[str]) -> list[argparse.Namespace]:
    """Each run's arguments: `argv` cut at every --then."""
    cuts = [i for i, arg in enumerate(argv) if arg == "--then"]
    return [parser.parse_args(argv[start + 1:end]) for start, end in zip([-1, *cuts], [*cuts, len(argv)])]


def work_through(world) -> None:
    for args in runs(sys.argv[1:]):
        work(world, args)
        gc.collect()  # the run's DDP reducer, which sits in reference cycles, goes before the next run's


run_in_world(work_through)
