"""Post-training: a pretrained model and data of the behaviour wanted in; a chat model, a preferred one, or a policy
that solves checkable problems, out.

Each method is a subclass of the one Trainer (tinylm.train.trainer: `ChatTrainer`, `DPOTrainer`, `GRPOTrainer`)
that brings its own loss, batches or evaluation, and each run goes through the one run skeleton (tinylm.train.run):

- `sft`: supervised fine-tuning on conversations, the loss on answers only (`ChatTrainer`); `vocab` grows a base
  model's vocabulary by the chat tokens, `plain` asks a base model in plain text (the fair baseline), `chat_base`
  pretrains the small base of the cpu and smoke profiles; `sft_run` is `python -m tinylm.finetune`.
- `dpo`: direct preference optimisation (the loss, pair log-probabilities, `DPOTrainer`); `dpo_run` is
  `python -m tinylm.dpo`.
- `grpo`: group-relative policy optimisation on problems a program checks (`tasks`), sampled in groups with the KV
  cache (`rollout`) from a model that already writes the task's format (`task_base`); `grpo_run` is
  `python -m tinylm.rl`; `grpo_recipes` holds each profile's settings.

LoRA adapters (tinylm.model.lora) compose with SFT and DPO.
"""
