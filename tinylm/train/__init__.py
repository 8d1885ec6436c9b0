"""Training: a model, a recipe and batches in; checkpoints, metrics.jsonl and progress lines out.

`recipes` holds the course's tracks (their data and a recipe per profile); `trainer` is the loop every track shares,
on one process or many (`distributed`), with `optim` (AdamW and its weight-decay split, or Muon beside it; the
cosine or WSD schedule), `checkpoint` (one schema, atomic and safe to load), `runlock` (one run per folder) and
`progress` (ETA, durations, how a record reads as a line).

`python -m tinylm.train` runs the command line (tinylm/cli/train.py).
"""
