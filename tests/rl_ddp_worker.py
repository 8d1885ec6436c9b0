"""GRPO under DDP for tests/test_rl_train.py: `torchrun --nproc_per_node=2 tests/rl_ddp_worker.py --out FILE`.

Every rank samples the same global rollout (same weights, same seed), keeps its share of the groups and makes the
GRPO update on it through DDP (two updates, SGD); rank 0 also makes the update of one process on the whole
rollout. Then both ranks
train two ordinary steps (each sampling its own share). Rank 0 saves the weights to compare to --out.
"""

import argparse
import copy
import dataclasses

import torch

from tinylm.config import GPTConfig
from tinylm.distributed import World, gather_to_main, run_in_world
from tinylm.model.gpt import GPT
from tinylm.posttrain.grpo_recipes import RL_RECIPES
from tinylm.posttrain.grpo_trainer import GRPOTrainer
from tinylm.posttrain.task_base import task_tokenizer
from tinylm.posttrain.tasks import get_task, held_out_problems

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
args = parser.parse_args()
torch.set_num_threads(1)


def share(rollout, rank: int, size: int):
    """Rank `rank`'s groups of a rollout of the whole batch."""
    groups = rollout.rewards.shape[0] // size
    group_size = rollout.rewards.shape[1]
    rows = slice(rank * groups * group_size, (rank + 1) * groups * group_size)
    return dataclasses.replace(
        rollout, sequences=rollout.sequences[rows], completion_mask=rollout.completion_mask[rows],
        rewards=rollout.rewards[rank * groups : (rank + 1) * groups],
        correct=rollout.correct[rank * groups : (rank + 1) * groups],
        well_formed=rollout.well_formed[rank * groups : (rank + 1) * groups], completions=rollout.completions[rows])


def work(world, held) -> None:
    tokenizer, task = task_tokenizer(), get_task("arithmetic", digits=1)
    recipe = dataclasses.replace(RL_RECIPES["smoke"], prompts=4, group_size=4, updates=2, learning_rate=1e-2,
                                 reward="format", held_out=8)
    held_out = held_out_problems(task, recipe.held_out)
    torch.manual_seed(0)
    start = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=32))

    def trainer(in_world):
        made = GRPOTrainer(copy.deepcopy(start), tokenizer, task, recipe, held_out, 6, world=in_world)
        # Plain SGD: AdamW's first step moves each weight by ±lr whatever its gradient's size, so a gradient that is
        # zero up to rounding (a key bias) would move by the sign of the rounding error, which differs between paths.
        made.optimizer = torch.optim.SGD(made.model.parameters(), lr=0.5)
        return made

    whole = trainer(World()).rollout()
    assert len(set(whole.rewards.flatten().tolist())) > 1, "a rollout whose rewards all agree teaches nothing"
    ddp = trainer(world)
    ddp.update(share(whole, world.rank, world.size))
    result = {"ddp": copy.deepcopy(ddp.model.state_dict()), "start": start.state_dict()}
    if world.is_main:
        alone = trainer(World())
        alone.update(whole)
        result["one"] = alone.model.state_dict()
    records = [ddp.train_step() for _ in range(2)]
    weights = gather_to_main({k: v.clone() for k, v in ddp.model.state_dict().items()})
    if world.is_main:
        result.update(rank0=weights[0], rank1=weights[1], records=records, world_size=world.size)
        torch.save(result, args.out)


run_in_world(work)
