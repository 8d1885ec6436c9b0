"""Post-training: a pretrained model and data of the behaviour wanted in; a chat model, a preferred one, or a policy
that solves checkable problems, out.

One folder per method, each a subclass of the one Trainer (tinylm.train.trainer) with its own loss, batches or
evaluation, and a Job of the one run skeleton (tinylm.train.run), with its recipes, its options value and its entry
function in `<method>/run.py`:

- `sft`: supervised fine-tuning on conversations, the loss on answers only (`SFTTrainer`; `python -m tinylm.sft`);
- `dpo`: direct preference optimisation of a chat model (`DPOTrainer`; `python -m tinylm.dpo`);
- `grpo`: group-relative policy optimisation on problems a program checks (`GRPOTrainer`; `python -m tinylm.grpo`).

Shared by the methods, here: `replies` (greedy replies and how they are scored), `vocab` (a base model's vocabulary
grown by the chat tokens), `plain` (a base asked in plain text, SFT's fair baseline) and `chat_base` (the small base
of the cpu and smoke profiles). No method imports another's modules. LoRA (tinylm.model.lora) composes with SFT and DPO.
"""
