"""Each task's and profile's SFT recipe: the default base, the Trainer's settings, the share of pretraining text,
and how many held-out instructions or prompts are answered greedily (`python -m tinylm.sft` runs it)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import TrainConfig

TASKS = ("stories", "instruct")


@dataclass(frozen=True)
class SFTRecipe:
    base: str  # the default --base
    train: TrainConfig
    pretraining_share: float  # share of batches drawn from pretraining text
    lora_learning_rate: float  # peak rate when only LoRA adapters train: they start at zero and need larger steps
    epochs: float | None = None  # if set, max_steps covers this many passes over the training conversations
    eval_prompts: int | None = None  # instruct: test prompts answered greedily before and after (None: all of them)
    held_out: int | None = None  # stories: validation and test instructions used (None: all of them)


def default_task(profile: str) -> str:
    """The story task where the base is the course's small story model (cpu, smoke); GPT-2 124M's instructions on
    gpu."""
    return "instruct" if profile == "gpu" else "stories"


SFT_RECIPES = {
    # the base is the story model of tinylm.posttrain.stories, pretrained first; no pretraining text is mixed in
    "stories": {
        "smoke": SFTRecipe(base="pretrain", pretraining_share=0.0, lora_learning_rate=1e-2, held_out=16,
                           train=TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3,
                                             min_lr=3e-4, eval_interval=10, log_interval=5, eval_batch_size=64,
                                             dtype="float32")),
        # a prototype's: 1,000 steps of 16 of the ~5,000 training instructions (4 per story); the validation answer
        # loss turns up before the pass rate stops climbing, so best.pt follows the pass rate
        "cpu": SFTRecipe(base="pretrain", pretraining_share=0.0, lora_learning_rate=1e-2,
                         train=TrainConfig(batch_size=16, max_steps=1000, warmup_steps=20, learning_rate=2e-3,
                                           min_lr=2e-4, beta2=0.99, eval_interval=100, log_interval=50,
                                           eval_batch_size=64, dtype="float32")),
        # not measured: the cpu recipe's on the gpu profile's larger story base, with larger batches
        "gpu": SFTRecipe(base="pretrain", pretraining_share=0.0, lora_learning_rate=5e-3,
                         train=TrainConfig(batch_size=32, max_steps=1500, warmup_steps=50, learning_rate=1e-3,
                                           min_lr=1e-4, beta2=0.99, eval_interval=250, log_interval=50,
                                           eval_batch_size=64)),
    },
    # the instruction set; the small base's own recipes are tinylm.posttrain.chat_base's
    "instruct": {
        "smoke": SFTRecipe(base="pretrain", pretraining_share=0.2, eval_prompts=8, lora_learning_rate=1e-2,
                           train=TrainConfig(batch_size=8, max_steps=20, warmup_steps=2, learning_rate=3e-3,
                                             min_lr=3e-4, eval_interval=10, log_interval=5, eval_batch_size=64,
                                             dtype="float32")),
        # ~10 epochs over the 991 training conversations (80% of 800 steps of 16), best.pt chosen on held-out answers
        "cpu": SFTRecipe(base="pretrain", pretraining_share=0.2, lora_learning_rate=1e-2,
                         train=TrainConfig(batch_size=16, max_steps=800, warmup_steps=20, learning_rate=1e-3,
                                           min_lr=1e-4, beta2=0.99, eval_interval=50, log_interval=25,
                                           eval_batch_size=64, dtype="float32")),
        # GPT-2 124M: two epochs at a small learning rate, as in most SFT recipes for models of this size
        "gpu": SFTRecipe(base="gpt2", pretraining_share=0.1, epochs=2.0, lora_learning_rate=5e-4,
                         train=TrainConfig(batch_size=16, max_steps=1000, warmup_steps=20, learning_rate=5e-5,
                                           min_lr=5e-6, weight_decay=0.1, eval_interval=50, log_interval=10,
                                           eval_batch_size=32)),
    },
}
