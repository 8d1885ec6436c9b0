"""GRPO under DDP for tests/test_grpo_train.py: `torchrun --nproc_per_node=2 tests/grpo_ddp_worker.py --out FILE`.

Every rank samples the same global rollout (same weights, same seed, a trainer of one process each), keeps its
share of the groups and makes one GRPO step on it through DDP (plain SGD); the test then makes the step of one
process on the whole rollout and compares. Both ranks then train two ordinary steps (each sampling its own share);
rank 0 saves everything to --out.
"""

import argparse
import copy
import dataclasses

import torch

from tinylm.config import GPTConfig
from tinylm.distributed import World, gather_to_main, run_in_world
from tinylm.model.gpt import GPT
from tinylm.posttrain.grpo.trainer import GRPOTrainer
from tinylm.posttrain.tasks._generated import task_tokenizer
from tinylm.posttrain.tasks.arithmetic import Arithmetic


def ddp_setup():
    """The start (a random 1-layer policy), tokenizer, task, recipe and held-out problems both sides use."""
    tokenizer, task = task_tokenizer(), Arithmetic("smoke", digits=1)
    usual = task.recipe("grpo", "smoke")
    recipe = dataclasses.replace(usual, prompts=4, group_size=4, updates=2, reward="format", validation=8, test=8,
                                 train=dataclasses.replace(usual.train, learning_rate=0.5, min_lr=0.5, max_steps=3,
                                                           eval_interval=0, log_interval=1))
    torch.manual_seed(0)
    start = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32))
    return start, tokenizer, task, recipe, task.held_out(recipe.validation, recipe.test)


def one_step_trainer(model, tokenizer, task, recipe, held_out, world, batch=None):
    """A GRPOTrainer with plain SGD (AdamW's first step moves each weight by ±lr whatever its gradient's size, so a
    gradient that is zero up to rounding, a key bias, would move by the sign of the rounding error, which differs
    between paths); given `batch`, its next step trains on it (the rollout source is between a rollout's updates)."""
    made = GRPOTrainer(copy.deepcopy(model), tokenizer, task, recipe, held_out, world=world)
    made.optimizer = torch.optim.SGD(made.model.parameters(), lr=recipe.train.learning_rate)
    if batch is not None:
        made.source.batch, made.source.served = batch, 1
    return made


def share(batch, rank: int, size: int, group_size: int):
    """Rank `rank`'s groups of a batch of the whole rollout (sequences, mask, advantages, old, ref)."""
    rows = batch[0].shape[0] // size
    assert rows % group_size == 0
    return tuple(None if t is None else t[rank * rows : (rank + 1) * rows] for t in batch)


def work(world) -> None:
    start, tokenizer, task, recipe, held_out = ddp_setup()
    whole = one_step_trainer(start, tokenizer, task, recipe, held_out, World()).source.next_batch()
    assert len(set(whole[2].tolist())) > 1, "a rollout whose advantages all agree teaches nothing"
    ddp = one_step_trainer(start, tokenizer, task, recipe, held_out, world,
                           share(whole, world.rank, world.size, recipe.group_size))
    records = []
    ddp.callbacks.append(records.append)
    ddp.fit(stop_after=1)
    result = {"ddp": copy.deepcopy(ddp.model.state_dict()), "start": start.state_dict(), "whole": list(whole)}
    ddp.fit(stop_after=2)
    weights = gather_to_main({k: v.clone() for k, v in ddp.model.state_dict().items()})
    if world.is_main:
        train = [r for r in records if r["event"] == "train"][1:]
        result.update(rank0=weights[0], rank1=weights[1], records=train, world_size=world.size)
        torch.save(result, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    run_in_world(work)
