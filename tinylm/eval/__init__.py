"""Evaluation: a model and text (or HellaSwag examples, or replies beside reference answers) in, losses, accuracies
and how sure they are out.

Bits per byte (`loss`) compares models whose tokenizers differ, and count-based baselines (`ngram`) say what a model
must beat. `python -m tinylm.eval` runs the command line (tinylm/cli/eval.py).
"""
