"""Post-training: a pretrained model and a task in; a chat model, a preferred one, or a policy that solves problems
a program checks, out.

Two axes. The methods, one folder each, none importing another's nor naming a task: `sft`, `dpo`, `grpo`, each a
Trainer of the one loop and a run function that calls the steps of tinylm.train.run and of `job`, which all three
share. The tasks, one module each in `tasks`: problems, their check, the prerequisite run a method starts from, and a
recipe per method and profile (`recipes`). `task` says what a task gives and how every method measures a model on one.
"""
