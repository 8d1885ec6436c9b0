"""Training: a model, a recipe and batches in; checkpoints, metrics.jsonl and progress lines out.

`options` (what every command that trains is told, the one resume rule, settings.json), `recipes` (the course's
tracks), `run` (the steps every run takes, as plain functions, with `run_folder` and `prerequisite`: a run another
starts from), `parallel` (alone, DDP, ZeRO-1 or FSDP), `trainer` (the one loop, with `optim`, `muon`, `checkpoint`,
`memory`, `resumable` and `progress`), `text` (the track made for your own text). `python -m tinylm.train` runs
the command line (tinylm/cli/train.py).
"""
