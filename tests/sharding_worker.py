"""Twenty steps of a tiny GPT three ways under `torchrun --nproc_per_node=2`, from the same weights on the same
batches (each rank its half of every global batch): DDP with torch's AdamW, ZeRO-1 (tinylm.train.zero) and FSDP2
(fully_shard per block, then the whole model) with torch's AdamW. Rank 0 writes to --out, as JSON, each way's
losses (the mean over both ranks) and every rank's bytes of parameters, gradients and optimizer state."""

import argparse
import json

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
from torch.nn.parallel import DistributedDataParallel

from tinylm.config import GPTConfig
from tinylm.model.gpt import GPT
from tinylm.train.zero import ZeroAdamW

parser = argparse.ArgumentParser()
parser.add_argument("--out", required=True)
parser.add_argument("--steps", type=int, default=20)
args = parser.parse_args()
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
config = GPTConfig(vocab_size=64, block_size=16, n_layer=2, n_head=2, n_embd=32)
generator = torch.Generator().manual_seed(0)
# 8 sequences per step, each counting up from a random start (mod 64): a pattern the model can learn
batches = [(torch.randint(64, (8, 1), generator=generator) + torch.arange(17)) % 64 for _ in range(args.steps)]
LR, BETAS, DECAY, CLIP = 3e-3, (0.9, 0.95), 0.1, 1.0


def adamw(model):
    """torch's AdamW with build_optimizer's split, one tensor at a time (the update ZeroAdamW writes out)."""
    params = list(model.parameters())
    return torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": DECAY},
                              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}],
                             lr=LR, betas=BETAS, foreach=False)


def nbytes(tensors) -> int:
    """Bytes this rank holds of `tensors` (a sharded tensor: its local shard)."""
    return sum((t.to_local() if hasattr(t, "to_local") else t).nbytes for t in tensors if t is not None)


def train(way: str) -> dict:
    torch.manual_seed(0)
    model = GPT(config)
    if way == "ddp":
        forward, optimizer = DistributedDataParallel(model), adamw(model)
    elif way == "zero":
        forward, optimizer = model, ZeroAdamW(model, LR, BETAS, weight_decay=DECAY, grad_clip=CLIP)
    else:
        for block in model.transformer.h:
            fully_shard(block)
        fully_shard(model)
        forward, optimizer = model, adamw(model)
    losses, held = [], {}
    for batch in batches:
        mine = batch[rank * 4:(rank + 1) * 4]  # this rank's half of the global batch
        loss = forward(mine[:, :-1], mine[:, 1:])[1]
        loss.backward()
        held = {"parameters": nbytes(model.parameters()), "gradients": nbytes(p.grad for p in model.parameters())}
        if way == "zero":
            optimizer.step()
        else:  # DDP averaged the gradients; FSDP reduce-scattered their averages into each rank's shard
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
            optimizer.step()
        optimizer.zero_grad()
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(total.item() / world)
    held["optimizer"] = (optimizer.state_bytes() if way == "zero" else
                         nbytes(t for state in optimizer.state.values() for t in state.values() if t.dim() > 0))
    return {"losses": losses, "held": held}


results = {way: train(way) for way in ("ddp", "zero", "fsdp")}
gathered = [None] * world
dist.all_gather_object(gathered, {way: result["held"] for way, result in results.items()})
if rank == 0:
    with open(args.out, "w") as f:
        json.dump({way: {"losses": result["losses"], "held": [ranks[way] for ranks in gathered]}
                   for way, result in results.items()}, f)
dist.destroy_process_group()
