"""Saving and loading training state, safely.

A checkpoint is one file written with `torch.save` and read back with `torch.load(weights_only=True)`,
which accepts only tensors and plain containers (dicts, lists, strings, numbers): loading a file
from anywhere can never run code hidden in a pickle. Configs and the tokenizer are stored as plain
dicts, not objects, for the same reason.

Writes are atomic: the bytes go to a temporary file in the same folder, are flushed to disk, and
the file is renamed over the old checkpoint in one step. A crash mid-save leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from .files import atomic_write

FORMAT = "tinylm-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file that is missing, damaged, or not a tinylm checkpoint."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_write(path) as f:
        torch.save({"format": FORMAT, "version": VERSION, **state}, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = find_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train one first (python -m tinylm.train ...) or check the path")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # torch reports refused objects and some damaged pickles alike
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data (or is damaged), so it was not loaded "
            f"(loading could run arbitrary code). Only tinylm checkpoints can be read here. Details: {error}"
        ) from error
    except Exception as error:  # damaged bytes surface as many types: RuntimeError, EOFError, UnicodeDecodeError, ...
        raise CheckpointError(f"{path} is damaged or not a PyTorch checkpoint ({error!r}); use another checkpoint, e.g. best.pt or last.pt of the same run") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a tinylm checkpoint (it lacks format={FORMAT!r})")
    if state.get("version") != VERSION:
        raise CheckpointError(f"{path} is tinylm checkpoint version {state.get('version')}; this tinylm reads version {VERSION}")
    return state


def find_checkpoint(run_dir: str | Path) -> Path:
    """A run folder's best.pt if it has one, else its last.pt."""
    run_dir = Path(run_dir)
    for name in ("best.pt", "last.pt"):
        if (run_dir / name).is_file():
            return run_dir / name
    raise CheckpointError(f"{run_dir} has neither best.pt nor last.pt; is it a run folder of python -m tinylm.train?")


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer, checkpoint dict) from a checkpoint file or run folder."""
    from .config import GPTConfig
    from .model import GPT
    from .tokenizers import tokenizer_from_dict

    state = load_checkpoint(path)
    model = GPT(GPTConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    model.to(device).eval()
    tokenizer = tokenizer_from_dict(state["tokenizer"]) if state.get("tokenizer") else None
    return model, tokenizer, state
