"""Each task's and profile's DPO recipe: the Trainer's settings, the default β, the LoRA learning rate, and for the
story task how its on-policy pairs are sampled (`python -m tinylm.dpo` runs it on top of that profile's SFT run)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TrainConfig

TASKS = ("stories", "preference")


@dataclass(frozen=True)
class DPORecipe:
    train: TrainConfig
    beta: float  # the default --beta
    lora_learning_rate: float  # peak rate when only LoRA adapters train: they start at zero and need larger steps
    eval_prompts: int | None = None  # preference: test prompts answered greedily before and after (None: all)
    instructions: int | None = None  # stories: training instructions the SFT model answers (None: all of them)
    samples: int = 4  # stories: replies sampled per instruction at temperature 1, from which a pair is drawn
    held_out: int | None = None  # stories: validation and test instructions used (None: all of them)


def default_task(profile: str) -> str:
    """The story task where the base is the course's small story model (cpu, smoke), the preference set on gpu."""
    return "preference" if profile == "gpu" else "stories"


DPO_RECIPES = {
    "stories": {
        "smoke": DPORecipe(beta=0.1, lora_learning_rate=1e-2, instructions=16, samples=4, held_out=8,
                           train=TrainConfig(batch_size=4, max_steps=6, warmup_steps=2, learning_rate=1e-3,
                                             min_lr=1e-4, eval_interval=3, log_interval=3, eval_batch_size=32,
                                             dtype="float32")),
        # about 490 pairs from 600 instructions, 1.6 passes over them, at a low rate (likelihood displacement)
        "cpu": DPORecipe(beta=0.1, lora_learning_rate=1e-3, instructions=600, samples=4,
                         train=TrainConfig(batch_size=8, max_steps=100, warmup_steps=10, learning_rate=1e-4,
                                           min_lr=1e-5, beta2=0.99, weight_decay=0.0,
                                           eval_interval=50, log_interval=25, eval_batch_size=32, dtype="float32")),
        # not measured: the cpu recipe's rates on the gpu profile's larger story model, more instructions
        "gpu": DPORecipe(beta=0.1, lora_learning_rate=1e-3, instructions=None, samples=4,
                         train=TrainConfig(batch_size=16, max_steps=400, warmup_steps=20, learning_rate=5e-5,
                                           min_lr=5e-6, beta2=0.99, weight_decay=0.0,
                                           eval_interval=50, log_interval=10, eval_batch_size=32)),
    },
    "preference": {
        "smoke": DPORecipe(beta=0.1, eval_prompts=8, lora_learning_rate=1e-2,
                           train=TrainConfig(batch_size=8, max_steps=10, warmup_steps=2, learning_rate=1e-3,
                                             min_lr=1e-4, eval_interval=5, log_interval=5, eval_batch_size=32,
                                             dtype="float32")),
        # about two passes over the cpu SFT run's ~990 training pairs, on top of runs/sft-instruct-cpu
        "cpu": DPORecipe(beta=0.1, lora_learning_rate=3e-3,
                         train=TrainConfig(batch_size=16, max_steps=120, warmup_steps=10, learning_rate=3e-4,
                                           min_lr=3e-5, beta2=0.99, weight_decay=0.0, eval_interval=20,
                                           log_interval=10, eval_batch_size=32, dtype="float32")),
        # GPT-2 124M chat: a small learning rate, as DPO recipes for models of this size use (not measured)
        "gpu": DPORecipe(beta=0.1, lora_learning_rate=5e-5,
                         train=TrainConfig(batch_size=8, grad_accum_steps=4, max_steps=300, warmup_steps=20,
                                           learning_rate=5e-6, min_lr=5e-7, weight_decay=0.0, eval_interval=50,
                                           log_interval=10, eval_batch_size=16)),
    },
}
