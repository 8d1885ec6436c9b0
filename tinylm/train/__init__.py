"""Training: a model, a recipe and batches in; checkpoints, metrics.jsonl and progress lines out.

`options` is what every command that trains is told (`RunOptions`, the one resume rule, settings.json); `recipes`
holds the course's tracks (their data and a recipe per profile); `run` is the one skeleton every command that trains
goes through (the folder, resume, the report), with `run_folder` (one run per folder, an --overwrite that never
loses the old run); `trainer` is the loop every run shares, on one process or many
(tinylm.distributed), with `optim` (AdamW and its weight-decay split, or Muon beside it, `muon`; the cosine or WSD
schedule), `checkpoint` (one schema, atomic and safe to load), `memory` (what a step needs, checked before the
first), `resumable` (Ctrl-C between steps, RNG states, metrics.jsonl) and `progress` (ETA, durations, how a record
reads as a line).

`python -m tinylm.train` runs the command line (tinylm/cli/train.py).
"""
