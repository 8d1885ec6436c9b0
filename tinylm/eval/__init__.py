"""Evaluation: a model and text (or HellaSwag examples) in, losses and accuracies out.

`loss` gives the loss per token over a whole split, and bits per byte, which compares models whose tokenizers
differ; `hellaswag` scores HellaSwag's multiple-choice endings (acc and acc_norm), across ranks under torchrun;
`uncertainty` says how sure a result is (the spread over seeds, a confidence interval for an accuracy); `ngram`
gives the count-based bigram baseline and its entropy bounds.

`python -m tinylm.eval` runs the command line (tinylm/cli/eval.py).
"""
