"""How much a generated reply shares with a reference answer: SQuAD's token F1 and ROUGE-L.

Both compare words, not meanings: a right answer in other words scores low, a fluent wrong one that repeats the
question's words can score high. They are cheap, need no model, and move when a model learns the shape and words of
the references, which is what a small fine-tuned model mostly learns; so notebook 9 reports them beside the answer
loss and the stop rate, never instead of them.
"""

from __future__ import annotations

import string
from collections import Counter

_ARTICLES = frozenset({"a", "an", "the"})
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalized_words(text: str) -> list[str]:
    """The words of `text` after SQuAD's normalisation: lower case, no punctuation, no articles."""
    return [word for word in text.lower().translate(_PUNCTUATION).split() if word not in _ARTICLES]


def _f_measure(overlap: int, predicted: int, reference: int) -> float:
    if predicted == 0 and reference == 0:
        return 1.0
    if overlap == 0:
        return 0.0
    precision, recall = overlap / predicted, overlap / reference
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD's F1 (Rajpurkar et al., 2016): the harmonic mean of the precision and recall of the shared words (each
    counted as often as it occurs in both). Two empty texts agree (1.0); an empty text against another scores 0.0."""
    predicted, expected = normalized_words(prediction), normalized_words(reference)
    shared = sum((Counter(predicted) & Counter(expected)).values())
    return _f_measure(shared, len(predicted), len(expected))


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two word lists, by dynamic programming in O(len(a)·len(b))
    time and O(len(b)) memory."""
    previous = [0] * (len(b) + 1)  # previous[j]: the LCS of a[:i-1] and b[:j]
    for word in a:
        current = [0]
        for j, other in enumerate(b):
            current.append(previous[j] + 1 if word == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (Lin, 2004): the longest common subsequence of words against both lengths."""
    predicted, expected = normalized_words(prediction), normalized_words(reference)
    return _f_measure(lcs_length(predicted, expected), len(predicted), len(expected))
