"""Post-training: a pretrained model and a task in; a chat model, a preferred one, or a policy that solves problems
a program checks, out.

Two axes. The methods, one folder each, none importing another's: `sft` (supervised fine-tuning on the task's
answers), `dpo` (preference pairs), `grpo` (reinforcement learning on the task's check); each is a Trainer of the
one loop (tinylm.train.trainer) and a Job of the one run skeleton (tinylm.train.run), over what `job` gives all
three. The tasks, one module each in `tasks` (stories, instruct, preference, arithmetic, countdown): problems, their
check, the model a method starts from, and a recipe per method and profile (`recipes`). `task` says what a task
gives and how every method measures a model on one; `chat_task` is what a chat model answers, `on_policy` the pairs
a task's check makes for DPO, `verifier` the story task's check, `vocab` the chat tokens a base model is given.
"""
