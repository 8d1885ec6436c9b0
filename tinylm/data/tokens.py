"""Token files on disk and the random training batches drawn from them.

A prepared dataset is a folder with `train.bin` and `val.bin` (raw uint16 ids, read as memory maps, so that a corpus
larger than RAM costs nothing to open; uint16 holds GPT-2's 50,257 ids at half int32's size) and `meta.json` (the
tokenizer, the source and the token counts). Token files are checked before they train anything, so that a damaged
or foreign file is an error that names it, not an IndexError inside the embedding.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from ..distributed import World
from ..errors import InputError, MissingFile
from ..paths import atomic_write, write_json

TOKEN_DTYPE = np.uint16
_SCAN_TOKENS = 1 << 24  # tokens per slice when looking for the first bad id (a 32 MB uint16 slice, 16 MB of bools)


class DataError(InputError):
    """Prepared token files that disagree with their metadata or with the tokenizer's vocabulary."""


class TokenFileWriter:
    """Append token-id chunks to a uint16 file that appears under its name only once complete.

        with TokenFileWriter(folder / "train.bin") as out:
            for chunk in chunks:
                out.append(chunk)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.count = 0

    def __enter__(self) -> "TokenFileWriter":
        self._context = atomic_write(self.path)
        self._file = self._context.__enter__()
        return self

    def append(self, ids) -> None:
        array = np.asarray(ids)
        if array.size and (array.min() < 0 or array.max() > np.iinfo(TOKEN_DTYPE).max):
            raise InputError(f"token ids must lie in [0, 65535] to be stored as uint16; "
                             f"got range [{array.min()}, {array.max()}]")
        self._file.write(array.astype(TOKEN_DTYPE).tobytes())
        self.count += array.size

    def __exit__(self, exc_type, exc, tb) -> None:
        self._context.__exit__(exc_type, exc, tb)


def write_tokens(path: str | Path, ids) -> None:
    """Write token ids as uint16, atomically; ids that do not fit are an error, not a silent wrap-around."""
    with TokenFileWriter(path) as out:
        out.append(ids)


def read_tokens(path: str | Path, expected: int | None = None, record: str = "its metadata",
                remedy: str = "") -> np.memmap:
    """A token file as a read-only memory map, its size checked first (see check_token_file)."""
    check_token_file(path, expected, record, remedy)
    return np.memmap(path, dtype=TOKEN_DTYPE, mode="r")


def check_token_file(path: str | Path, expected: int | None = None, record: str = "its metadata",
                     remedy: str = "") -> None:
    """One stat: the file exists and holds whole tokens, `expected` of them if given (the count that
    `record`, e.g. meta.json, holds for it). A mismatch is a DataError whose message ends with `remedy`."""
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"no token file at {path}; prepare the dataset first "
                                "(python -m tinylm.train prepares it)")
    size, itemsize = path.stat().st_size, np.dtype(TOKEN_DTYPE).itemsize
    problem = None
    if size % itemsize:
        problem = f"{path} has {size:,} bytes, not a whole number of {itemsize}-byte tokens"
    elif expected is not None and size != expected * itemsize:
        problem = f"{path} holds {size // itemsize:,} tokens but {record} records {expected:,}"
    if problem:
        raise DataError(f"{problem} (an interrupted copy, or a file changed by hand); "
                        f"{remedy or 'prepare the data again'}")


def gather_windows(tokens: np.ndarray, starts, length: int, vocab_size: int | None = None) -> np.ndarray:
    """int64 array (len(starts), length) of tokens[s : s + length] for each start s.

    With `vocab_size`, an id outside [0, vocab_size) is a DataError naming the file (a memory map's
    filename) and the position: what an embedding would otherwise report as an IndexError, or on a
    GPU as a device-side assert that ends the process.
    """
    windows = np.stack([tokens[s : s + length] for s in starts])
    if vocab_size is not None and windows.size and (windows.max() >= vocab_size or windows.min() < 0):
        row, column = np.argwhere((windows >= vocab_size) | (windows < 0))[0]
        raise _outside_vocabulary(tokens, windows[row, column], int(starts[row]) + column, vocab_size)
    return windows.astype(np.int64)


def check_token_ids(tokens: np.ndarray, vocab_size: int) -> None:
    """Every id of the 1-D `tokens` lies in [0, vocab_size), or a DataError names the file (a memory map's) and
    the first bad position. One pass over the array (its max, and its min if the dtype is signed)."""
    signed = np.issubdtype(tokens.dtype, np.signedinteger)
    if not len(tokens) or (tokens.max() < vocab_size and not (signed and tokens.min() < 0)):
        return
    for start in range(0, len(tokens), _SCAN_TOKENS):
        piece = np.asarray(tokens[start : start + _SCAN_TOKENS])
        bad = np.flatnonzero((piece >= vocab_size) | (piece < 0))
        if bad.size:
            raise _outside_vocabulary(tokens, piece[bad[0]], start + int(bad[0]), vocab_size)


def _outside_vocabulary(tokens: np.ndarray, token_id: int, position: int, vocab_size: int) -> DataError:
    source = getattr(tokens, "filename", None)
    where = f"{source} holds" if source else "the token array holds"
    folder = f"delete {Path(source).parent} and " if source else ""
    return DataError(f"{where} token id {token_id} at position {position:,}, outside the vocabulary of "
                     f"{vocab_size:,} ids: the file is damaged or was made with another tokenizer; "
                     f"{folder}prepare the data again (python -m tinylm.prepare <dataset>)")


def write_meta(folder: str | Path, meta: dict[str, Any]) -> None:
    write_json(Path(folder) / "meta.json", meta, indent=2)


def read_meta(folder: str | Path) -> dict[str, Any] | None:
    """A prepared folder's meta.json as the dict write_meta wrote, or None when the folder has none. A file that is
    not a JSON object (edited by hand, cut short) is a DataError that says to prepare the data again."""
    path = Path(folder) / "meta.json"
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        problem = f"is not valid JSON ({error})"
    else:
        if isinstance(meta, dict):
            return meta
        value = {list: "an array", str: "a string"}.get(type(meta), "a single value")
        problem = f"holds {value}, not the JSON object of fields tinylm writes"
    raise DataError(f"{path} {problem}: it was edited or damaged; delete {path.parent} and prepare the data again "
                    "(python -m tinylm.prepare <dataset>)")


def to_device(device, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """A batch's tensors on `device`; to a GPU through pinned memory, so that the copy overlaps the compute."""
    if torch.device(device).type == "cuda":
        return tuple(t.pin_memory().to(device, non_blocking=True) for t in tensors)
    return tuple(t.to(device) for t in tensors)


class RandomWindowSampler:
    """Batches of (x, y) windows at uniformly random offsets; y is x shifted one token to the left.

    Every start offset in [0, len(tokens) - block_size - 1] is equally likely, so every token can be
    a target. The generator is private to the sampler: nothing else that draws random numbers
    (dropout, sampling text) changes which batches come next.

    Under DDP every rank holds the same generator, draws the offsets of the whole global batch
    (world_size * batch_size) and keeps its own slice: ranks see different data, and the saved
    state is the same on every rank, so a run saved with N processes resumes exactly with M as
    long as the global batch is the same.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, seed: int, world: World = World(),
                 vocab_size: int | None = None):
        """world: the processes sharing each global batch; vocab_size: ids at or above it are an error, in the whole
        array now (check_token_ids) and in every window drawn; None: not checked."""
        if len(tokens) < block_size + 1:
            raise InputError(f"{len(tokens)} tokens cannot fill one window of {block_size} + 1 tokens; "
                             "use a smaller block_size or more data")
        if vocab_size is not None:
            check_token_ids(tokens, vocab_size)
        self.tokens = tokens
        self.block_size = block_size
        self.batch_size = batch_size
        self.rank, self.world_size = world.rank, world.size
        self.vocab_size = vocab_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_batch(self, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
        high = len(self.tokens) - self.block_size  # exclusive bound: the last window's target is the last token
        starts = torch.randint(high, (self.world_size * self.batch_size,), generator=self.generator)
        starts = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size].tolist()
        batch = torch.from_numpy(gather_windows(self.tokens, starts, self.block_size + 1, self.vocab_size))  # (B, T+1)
        return to_device(device, batch[:, :-1], batch[:, 1:])

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])


def batched(items: Iterable, size: int) -> Iterator[list]:
    """Lists of `size` consecutive items (the last one may be shorter): Python 3.12's itertools.batched, as lists."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch
