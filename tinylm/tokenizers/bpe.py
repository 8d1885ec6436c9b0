"""GPT-2's byte-level BPE, written to be read: the slow, plain-Python twin of tiktoken's fast one.

A regex cuts the text into pieces that merges never cross; each piece's UTF-8 bytes map to printable characters
(`bytes_to_unicode`), the alphabet of GPT-2's `encoder.json` and `vocab.bpe`; then the adjacent pair that comes
earliest in `vocab.bpe` is merged until none is a merge. `GPT2BPE` reproduces tiktoken's GPT-2 encoding token for
token; `train_bpe` shows where merges come from (count pairs, merge the most frequent, repeat), and
`train_bpe_incremental` learns the same merges as real trainers do, recounting only the pieces a merge touches.
"""

from __future__ import annotations

import heapq
import json
from collections import Counter, defaultdict
from functools import partial
from typing import Callable

import regex

from ..download import RemoteFile, fetch
from ..paths import data_dir

# GPT-2's pre-tokenisation pattern (openai/gpt-2, src/encoder.py). In order: English contractions,
# letters with an optional leading space, digits likewise, other symbols likewise, whitespace that
# is not followed by a non-space (so the last space before a word stays with the word), whitespace.
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_SPLIT = regex.compile(GPT2_SPLIT_PATTERN)

_GPT2_BASE = "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main"
GPT2_ENCODER_JSON = RemoteFile(
    url=f"{_GPT2_BASE}/encoder.json",
    sha256="196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783",
    mirror_path="gpt2/encoder.json",
)
GPT2_VOCAB_BPE = RemoteFile(
    url=f"{_GPT2_BASE}/vocab.bpe",
    sha256="1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5",
    mirror_path="gpt2/vocab.bpe",
)

Pair = tuple[int, int]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each of the 256 byte values to a printable character.

    Printable bytes ('!'..'~', '¡'..'¬', '®'..'ÿ') map to themselves; the other 68 (control bytes,
    space, ...) map to chr(256), chr(257), ... in byte order. So space (32) becomes 'Ġ' and newline
    (10) becomes 'Ċ'. Why: the merges file is text, one "left right" pair per line, and a raw space
    or newline inside a token would break that format.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


def pretokenize(text: str) -> list[str]:
    """The pieces GPT-2 encodes one at a time; they concatenate back to `text`."""
    return GPT2_SPLIT.findall(text)


def load_gpt2_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """GPT-2's vocabulary (token string -> id, 50,257 entries) and its 50,000 merges, best first."""
    folder = data_dir() / "gpt2"
    encoder_path = fetch(GPT2_ENCODER_JSON, folder / "encoder.json")
    merges_path = fetch(GPT2_VOCAB_BPE, folder / "vocab.bpe")
    encoder = json.loads(encoder_path.read_text(encoding="utf-8"))
    lines = merges_path.read_text(encoding="utf-8").split("\n")[1:]  # line 0 is "#version: 0.2"
    merges = [(left, right) for left, right in (line.split(" ") for line in lines if line)]
    return encoder, merges


def merge(ids: tuple | list, pair: tuple, new_id) -> tuple:
    """Replace each occurrence of `pair` in `ids` by `new_id`, left to right ("aaa" -> "Xa"): ids and a new id when
    training, or byte-level strings and the two glued together when GPT-2's merges are applied."""
    out, i = [], 0
    while i < len(ids):
        if i + 1 < len(ids) and (ids[i], ids[i + 1]) == pair:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return tuple(out)


class GPT2BPE:
    """GPT-2's tokenizer from its two files: encode(text) -> ids, decode(ids) -> text."""

    def __init__(self, encoder: dict[str, int] | None = None, merges: list[tuple[str, str]] | None = None):
        if encoder is None or merges is None:
            encoder, merges = load_gpt2_bpe()
        self.encoder = encoder  # byte-level token string, e.g. "Ġthe" -> id 262
        self.decoder = {i: s for s, i in encoder.items()}
        self.ranks = {pair: rank for rank, pair in enumerate(merges)}  # lower rank = learned earlier = merged first
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {c: b for b, c in self.byte_encoder.items()}
        self.cache: dict[str, list[int]] = {}  # pre-token -> ids; text repeats its words a lot

    def bpe(self, piece: str) -> list[str]:
        """Merge one byte-level piece (e.g. "Ġhello") into GPT-2 tokens, lowest-ranked pair first."""
        parts = list(piece)  # start from single bytes (as characters)
        while len(parts) > 1:
            pairs = set(zip(parts, parts[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, float("inf")))
            if best not in self.ranks:  # no adjacent pair is a merge: done
                break
            parts = merge(parts, best, best[0] + best[1])
        return list(parts)

    def encode(self, text: str) -> list[int]:
        """Ids of `text`, special-token strings included as ordinary text (tiktoken's encode_ordinary)."""
        ids: list[int] = []
        for piece in pretokenize(text):
            if piece not in self.cache:
                chars = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
                self.cache[piece] = [self.encoder[token] for token in self.bpe(chars)]
            ids.extend(self.cache[piece])
        return ids

    def decode(self, ids) -> str:
        """Text of `ids`; a cut through a multi-byte character decodes to U+FFFD, like tiktoken."""
        chars = "".join(self.decoder[int(i)] for i in ids)
        return bytes(self.byte_decoder[c] for c in chars).decode("utf-8", errors="replace")


# --- Training: where merges come from -------------------------------------------------------------


def get_pair_counts(words: dict[tuple[int, ...], int]) -> Counter[Pair]:
    """How often each adjacent pair occurs, over words (id tuples) that occur `count` times each."""
    counts: Counter[Pair] = Counter()
    for word, count in words.items():
        for pair in zip(word, word[1:]):
            counts[pair] += count
    return counts


def train_bpe(text: str, num_merges: int) -> tuple[dict[Pair, int], Callable[[str], list[int]]]:
    """Learn up to `num_merges` merges on `text`; return them (pair -> new id, in learning order) and an encoder.

    Like GPT-2, the text is pre-tokenised first and merges stay inside pieces. Each distinct piece
    is kept once with its count, so a step costs one pass over the distinct pieces, not the text.
    Ties go to the pair seen first. Training stops early when every piece is a single token.
    """
    words = Counter(tuple(piece.encode("utf-8")) for piece in pretokenize(text))  # byte ids 0..255
    merges: dict[Pair, int] = {}
    for new_id in range(256, 256 + num_merges):
        counts = get_pair_counts(words)
        if not counts:
            break
        best = max(counts, key=counts.__getitem__)  # the most frequent pair becomes token `new_id`
        merges[best] = new_id
        words = Counter({merge(word, best, new_id): count for word, count in words.items()})
    return merges, partial(bpe_encode, merges=merges)


def train_bpe_incremental(text: str, num_merges: int) -> tuple[dict[Pair, int], Callable[[str], list[int]]]:
    """`train_bpe`'s merges, ties included, with the pair counts updated after each merge instead of recounted.

    Two maps are kept up to date: pair -> count, and pair -> the pieces (by index) that hold it. A merge
    visits only the pieces holding the merged pair: their old pairs are taken out of both maps and
    their new pairs put in. A heap of (-count, pair) finds the most frequent pair; its entries go stale
    as counts change, and a stale one is dropped when it comes to the top.
    """
    piece_counts = Counter(tuple(piece.encode("utf-8")) for piece in pretokenize(text))
    words, word_counts = list(piece_counts), list(piece_counts.values())  # in first-seen order, as train_bpe's
    pair_counts = get_pair_counts(piece_counts)
    holders: dict[Pair, set[int]] = defaultdict(set)
    for index, word in enumerate(words):
        for pair in zip(word, word[1:]):
            holders[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: dict[Pair, int] = {}
    for new_id in range(256, 256 + num_merges):
        best = _pop_most_frequent(heap, pair_counts, holders, words)
        if best is None:  # every piece is a single token
            break
        merges[best] = new_id
        changed: set[Pair] = set()
        for index in holders.pop(best):
            old, count = words[index], word_counts[index]
            words[index] = new = merge(old, best, new_id)
            old_pairs, new_pairs = list(zip(old, old[1:])), list(zip(new, new[1:]))
            for pair in old_pairs:
                pair_counts[pair] -= count
            for pair in new_pairs:
                pair_counts[pair] += count
            for pair in set(old_pairs) - set(new_pairs) - {best}:
                holders[pair].discard(index)
            for pair in new_pairs:
                holders[pair].add(index)
            changed.update(old_pairs, new_pairs)
        for pair in changed:
            if pair_counts[pair] > 0:
                heapq.heappush(heap, (-pair_counts[pair], pair))
            else:  # gone from every piece (the merged pair among them)
                del pair_counts[pair]
                holders.pop(pair, None)
    return merges, partial(bpe_encode, merges=merges)


def _pop_most_frequent(heap: list, pair_counts: Counter[Pair], holders: dict[Pair, set[int]],
                       words: list[tuple[int, ...]]) -> Pair | None:
    """The most frequent pair, with train_bpe's tie-break: among equals, the one its recount meets first
    (in the earliest piece, and there at the earliest position)."""
    while heap:
        top, tied = heap[0][0], []
        while heap and heap[0][0] == top:
            pair = heapq.heappop(heap)[1]
            if pair_counts.get(pair) == -top and pair not in tied:  # else stale: the count has changed since
                tied.append(pair)
        if tied:
            best = min(tied, key=lambda pair: _first_seen(pair, holders, words))
            for pair in tied:
                if pair != best:
                    heapq.heappush(heap, (top, pair))
            return best
    return None


def _first_seen(pair: Pair, holders: dict[Pair, set[int]], words: list[tuple[int, ...]]) -> tuple[int, int]:
    index = min(holders[pair])
    return index, list(zip(words[index], words[index][1:])).index(pair)


def bpe_encode(text: str, merges: dict[Pair, int]) -> list[int]:
    """Encode with learned merges: per piece, keep merging the present pair that was learned first."""
    ids: list[int] = []
    for piece in pretokenize(text):
        word = tuple(piece.encode("utf-8"))
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: merges.get(p, float("inf")))
            if pair not in merges:
                break
            word = merge(word, pair, merges[pair])
        ids.extend(word)
    return ids


def bpe_decode(ids: list[int], merges: dict[Pair, int]) -> str:
    """Text of `ids`: the bytes each id stands for (the 256 bytes, then each merge's two halves glued together)."""
    vocab = {i: bytes([i]) for i in range(256)}
    for (a, b), new_id in merges.items():  # dicts keep learning order, so both halves already exist
        vocab[new_id] = vocab[a] + vocab[b]
    return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")
