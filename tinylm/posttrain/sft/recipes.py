"""Each profile's SFT recipe: the default base, the Trainer's settings, the share of pretraining text, and how many
test prompts are answered greedily before and after (`python -m tinylm.sft` runs it)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TrainConfig


@dataclass(frozen=True)
class SFTRecipe:
    base: str  # the default --base
    train: TrainConfig
    pretraining_share: float  # share of batches drawn from pretraining text
    lora_learning_rate: float  # peak rate when only LoRA adapters train: they start at zero and need larger steps
    epochs: float | None = None  # if set, max_steps covers this many passes over the training conversations
    eval_prompts: int | None = None  # test prompts answered greedily before and after (None: all of them)


SFT_RECIPES = {  # the base model's own recipes are tinylm.posttrain.chat_base's
    "smoke": SFTRecipe(base="pretrain", pretraining_share=0.2, eval_prompts=8, lora_learning_rate=1e-2,
                       train=TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3, min_lr=3e-4,
                                         eval_interval=10, log_interval=5, eval_batch_size=64, dtype="float32")),
    # ~10 epochs over the 991 training conversations (80% of 800 steps of 16), best.pt chosen on held-out answers
    "cpu": SFTRecipe(base="pretrain", pretraining_share=0.2, lora_learning_rate=1e-2,
                     train=TrainConfig(batch_size=16, max_steps=800, warmup_steps=20, learning_rate=1e-3, min_lr=1e-4,
                                       beta2=0.99, eval_interval=50, log_interval=25, eval_batch_size=64,
                                       dtype="float32")),
    # GPT-2 124M: two epochs at a small learning rate, as in most SFT recipes for models of this size
    "gpu": SFTRecipe(base="gpt2", pretraining_share=0.1, epochs=2.0, lora_learning_rate=5e-4,
                     train=TrainConfig(batch_size=16, max_steps=1000, warmup_steps=20, learning_rate=5e-5,
                                       min_lr=5e-6, weight_decay=0.1, eval_interval=50, log_interval=10,
                                       eval_batch_size=32)),
}
