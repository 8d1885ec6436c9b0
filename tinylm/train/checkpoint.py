"""Saving and loading training state, safely.

A checkpoint is one `torch.save` file read back with `torch.load(weights_only=True)`, so loading a file from
anywhere never runs code hidden in a pickle (configs and tokenizers are stored as plain dicts). A save is atomic
(tinylm.paths.atomic_write). The schema lives here alone: `format` and `version`, MODEL_KEYS and the tokenizer for a
model checkpoint (`model_checkpoint`, `load_model`), TRAINING_KEYS added for one --resume continues. A file is
checked against it before anything is built (shapes on the meta device), so a damaged or diverged file is a
one-line CheckpointError. `find_checkpoint` reads a run folder: its best.pt, else its last.pt.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ..config import GPTConfig
from ..errors import TinyLMError
from ..model.gpt import GPT
from ..model.lora import apply_settings, has_lora, lora_settings, merge_lora
from ..paths import atomic_write, runs_dir, shown
from ..tokenizers.saved import tokenizer_from_dict
from .run_folder import run_file

FORMAT = "tinylm-checkpoint"
VERSION = 1
MODEL_KEYS = ("model_config", "model")
# A training checkpoint also holds best_<score>, the best evaluation so far, <score> naming what a run is chosen by:
# "val_loss" unless the checkpoint says otherwise in `score` (GRPO: "accuracy").
TRAINING_KEYS = ("train_config", "optimizer", "scaler", "step", "elapsed", "skipped_steps", "sampler", "rng")


class CheckpointError(TinyLMError, RuntimeError):
    """A checkpoint file that is missing, damaged, or not a tinylm checkpoint."""


DAMAGED = "the file was edited or damaged: use another checkpoint (best.pt or last.pt of the same run)"


def model_checkpoint(model, tokenizer=None, **entries) -> dict[str, Any]:
    """The checkpoint of a tinylm GPT: MODEL_KEYS, then `entries` (a run's TRAINING_KEYS, where imported weights
    came from). `tokenizer`: a tokenizer, its to_dict() description, or None. A model with LoRA adapters
    (tinylm.model.lora) is saved as it trains, wrapped, with its `lora` settings: resuming needs the adapters
    apart, and `load_model` merges them."""
    description = tokenizer.to_dict() if hasattr(tokenizer, "to_dict") else tokenizer
    lora = {"lora": lora_settings(model)} if has_lora(model) else {}
    return {"model_config": model.config.to_dict(), "model": model.state_dict(), "tokenizer": description, **lora,
            **entries}


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` to `path` atomically: on any failure (a full disk too) the previous file stays as it was."""
    with atomic_write(path) as f:
        try:
            torch.save({"format": FORMAT, "version": VERSION, **state}, f)
        except RuntimeError as error:
            # A failed write (ENOSPC) makes torch's zip writer fail to finish the file with "[enforce fail at
            # inline_container.cc] unexpected pos"; the OSError it hides is what happened, and atomic_write names
            # the file in it.
            if isinstance(error.__context__, OSError):
                raise error.__context__ from None
            raise


def _no_checkpoint(path: Path) -> CheckpointError:
    return CheckpointError(f"no checkpoint at {path}; train one first (python -m tinylm.train ...) or check the path")


def _refusal(error: pickle.UnpicklingError) -> str:
    """What torch.load's weights-only unpickler refused, in one line, without torch's advice around it (to load the
    file with weights_only=False, which is what would run the code)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    return " ".join(text.split()) or type(error).__name__


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = checkpoint_file(path)
    if not path.is_file():
        raise _no_checkpoint(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:  # torch reports refused objects and some damaged pickles alike
        raise CheckpointError(
            f"{path} holds Python objects other than tensors and plain data, or is damaged or no PyTorch file at all "
            f"({_refusal(error)}), so it was not loaded (loading such objects could run arbitrary code); use a "
            "checkpoint tinylm wrote, e.g. best.pt or last.pt of a run"
        ) from error
    except Exception as error:  # damaged bytes surface as many types: RuntimeError, EOFError, UnicodeDecodeError, ...
        raise CheckpointError(f"{path} is damaged or not a PyTorch checkpoint ({error!r}); use another checkpoint, "
                              "e.g. best.pt or last.pt of the same run") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a PyTorch file but not a tinylm checkpoint (it lacks format={FORMAT!r})")
    version = state.setdefault("version", 1)  # written before checkpoints carried a version
    if version != VERSION:
        raise CheckpointError(f"{path} is tinylm checkpoint version {version}; this tinylm reads version {VERSION}: "
                              "use the tinylm that wrote it")
    return state


def check_model_checkpoint(state: dict[str, Any], path: str | Path) -> GPTConfig:
    """The checkpoint's GPTConfig, once its config builds and its weights have exactly the shapes that config gives."""

    missing = [key for key in MODEL_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} has no {' or '.join(missing)}, so it holds no model; {DAMAGED}")
    try:
        config = GPTConfig.from_dict(state["model_config"])
    except (TypeError, ValueError) as error:  # not a dict, an unknown field, a value that cannot work
        raise CheckpointError(f"{path} has an unusable model_config ({error}); {DAMAGED}") from None
    weights = state["model"]
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        raise CheckpointError(f"{path}: its 'model' entry is not a dict of tensors; {DAMAGED}")
    try:
        with torch.device("meta"):  # shapes without storage: a vocabulary of 10**12 costs nothing here
            expected = {name: tuple(t.shape) for name, t in _model_as_saved(state, config).state_dict().items()}
    except (RuntimeError, TypeError, OverflowError) as error:  # sizes beyond what a tensor can have
        raise CheckpointError(f"{path}: its model_config describes a model that cannot be built "
                              f"({type(error).__name__}); {DAMAGED}") from None
    except (KeyError, ValueError) as error:  # LoRA settings that are not the ones a run writes (LoRAError too)
        raise CheckpointError(f"{path}: its lora settings cannot be applied ({error}); {DAMAGED}") from None
    problems = [f"{name} is missing" for name in expected if name not in weights]
    problems += [f"{name} is not part of the model" for name in weights if name not in expected]
    problems += [f"{name} has shape {tuple(weights[name].shape)}, the config gives {shape}"
                 for name, shape in expected.items() if name in weights and tuple(weights[name].shape) != shape]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointError(f"{path}: its weights do not fit its model_config: {'; '.join(problems[:3])}{more}; "
                              f"{DAMAGED}")
    not_finite = [name for name, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if not_finite:
        more = f" (and {len(not_finite) - 1} more)" if len(not_finite) > 1 else ""
        raise CheckpointError(f"{path}: its weights are not finite ({not_finite[0]}{more} holds NaN or infinity): "
                              "the run that wrote it diverged, or the file is damaged; use another checkpoint (the "
                              "run's best.pt or last.pt, or an earlier run's)")
    if state.get("tokenizer") is not None and not isinstance(state["tokenizer"], dict):
        raise CheckpointError(f"{path}: its tokenizer entry is {type(state['tokenizer']).__name__} "
                              f"{str(state['tokenizer'])[:40]!r}, not a tokenizer description; {DAMAGED}")
    return config


def _model_as_saved(state: dict[str, Any], config: GPTConfig):
    """A GPT of `config`, wrapped with LoRA adapters when the checkpoint was saved with them."""
    model = GPT(config)
    if state.get("lora") is not None:
        apply_settings(model, state["lora"])
    return model


def load_training_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint that --resume can continue: a checked model checkpoint with every one of TRAINING_KEYS."""
    state = load_checkpoint(path, map_location)
    check_model_checkpoint(state, path)
    missing = [key for key in (*TRAINING_KEYS, best_score_key(state)) if key not in state]
    if missing:
        raise CheckpointError(f"{path} holds a model but not a training run's state (it has no {', '.join(missing)}), "
                              "so it cannot be resumed: start a new run in another --out folder")
    problem = _training_state_problem(state)
    if problem:
        raise CheckpointError(f"{path}: its training state is damaged ({problem}), so it cannot be resumed: copy the "
                              "run's best.pt over it to resume from there, or start a new run (another --out)")
    return state


def refuse_to_replace_training_run(path: str | Path, option: str = "--out") -> None:
    """Raise CheckpointError if `path` is a training checkpoint (one that --resume continues: it holds the optimizer's
    state), which a command that writes weights (import, export) must never replace. Only the file's index is read
    (a memory-mapped load), so this costs milliseconds at any size; anything that is not a tinylm checkpoint, a
    damaged file included, is no run to lose."""
    path = Path(path)
    if not path.is_file():
        return
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # not a PyTorch zip file at all (a llama2.c .bin, text, damaged bytes): no run to lose
        return
    if isinstance(state, dict) and state.get("format") == FORMAT and "optimizer" in state:
        raise CheckpointError(f"{path} holds a training run (step {state.get('step', '?')}, with the optimizer state "
                              f"that --resume needs), which writing there would lose; choose another {option}")


def best_score_key(state: dict[str, Any]) -> str:
    """The key of a training checkpoint's best evaluation: best_val_loss, or best_<score> where it names a score."""
    return f"best_{state.get('score', 'val_loss')}"


def _is_torch_optimizer_state(optimizer) -> bool:
    return (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list) and bool(optimizer["param_groups"])
            and all(isinstance(group, dict) and isinstance(group.get("params"), list)
                    for group in optimizer["param_groups"]))


def _training_state_problem(state: dict[str, Any]) -> str | None:
    """What makes a checkpoint's TRAINING_KEYS unusable for a Trainer (None: nothing): the containers and numbers
    Trainer.load_state_dict reads, so that a hand-edited or damaged file fails here and not halfway through."""
    optimizer = state["optimizer"]
    parts = list(optimizer.values()) if isinstance(optimizer, dict) and set(optimizer) == {"muon", "adamw"} else [
        optimizer]  # Muon beside AdamW saves each one's state
    if not all(_is_torch_optimizer_state(part) for part in parts):
        return "its optimizer entry lacks the 'state' and 'param_groups' a torch optimizer saves"
    sampler = state["sampler"]
    if not (isinstance(sampler, dict) and isinstance(sampler.get("generator"), torch.Tensor)):
        return "its sampler entry lacks the batch generator's state"
    rngs = state["rng"] if isinstance(state["rng"], list) else [state["rng"]]  # a dict: written before per-rank RNGs
    if not rngs or not all(isinstance(rng, dict) and isinstance(rng.get("torch"), torch.Tensor) for rng in rngs):
        return "its rng entry lacks the dropout generators' states"
    for key, kind in {"train_config": dict, "scaler": dict, "step": int, "skipped_steps": int,
                      "elapsed": (int, float), best_score_key(state): (int, float)}.items():
        if not isinstance(state[key], kind) or isinstance(state[key], bool):
            return f"its {key} entry is {type(state[key]).__name__} {str(state[key])[:40]!r}"
    return None


def model_to_resume(state: dict[str, Any]):
    """(model, tokenizer) of the network a training checkpoint continues, LoRA adapters apart as it trained; the
    Trainer's load_state_dict then loads its weights."""
    model = _model_as_saved(state, GPTConfig.from_dict(state["model_config"]))
    return model, tokenizer_from_dict(state["tokenizer"]) if state.get("tokenizer") else None


def find_checkpoint(run_dir: str | Path) -> Path:
    """A run folder's best.pt if it has one, else its last.pt; the old run's while an --overwrite of it has not saved
    its first last.pt (tinylm.train.run_folder.run_file)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():  # the path is wrong, not the folder's contents
        raise _no_checkpoint(run_dir)
    for name in ("best.pt", "last.pt"):
        if (path := run_file(run_dir, name)).is_file():
            return path
    raise CheckpointError(f"{run_dir} has neither best.pt nor last.pt; is it a run folder of python -m tinylm.train?")


def checkpoint_file(path: str | Path) -> Path:
    """The checkpoint file `path` names: a run folder's (`find_checkpoint`), else the path as given."""
    path = Path(path)
    return find_checkpoint(path) if path.is_dir() else path


def load_model(path: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer, checkpoint dict) from a checkpoint file or run folder. The LoRA adapters of a
    checkpoint that has them are merged: the model is a plain GPT either way."""
    path = checkpoint_file(path)
    state = load_checkpoint(path)
    model = _model_as_saved(state, check_model_checkpoint(state, path))
    model.load_state_dict(state["model"])
    merge_lora(model)
    model.to(device).eval()
    try:
        tokenizer = tokenizer_from_dict(state["tokenizer"]) if state.get("tokenizer") else None
    except ValueError as error:
        raise CheckpointError(f"{path}: its tokenizer cannot be rebuilt ({error}); {DAMAGED}") from None
    return model, tokenizer, state


class PretrainedUnavailable(TinyLMError, RuntimeError):
    """A model to start from that cannot be loaded here: GPT-2 from Hugging Face while offline."""


def published_model(name: str, say=print) -> Path:
    """runs/<name>/last.pt of a published model (tinylm.interop.gguf_import.PUBLISHED_GGUF), imported from its GGUF
    file the first time, as `python -m tinylm.interop import --gguf NAME` imports it."""
    from ..interop.gguf_import import from_gguf, gguf_path

    path = run_file(runs_dir() / name, "last.pt")
    if not path.is_file():
        model, tokenizer = from_gguf(gguf_path(name))
        save_checkpoint(path, model_checkpoint(model, tokenizer, step=0, elapsed=0.0, source=f"GGUF: {name}"))
        say(f"imported {name} into {shown(path.parent)}")
    return path


def load_pretrained(source: str | Path, option: str = "--base") -> tuple[GPT, Any, str, Path | None]:
    """(model in eval mode, tokenizer, description, its checkpoint file) of what `option` names: OpenAI's GPT-2 124M
    (`gpt2`, from Hugging Face once; offline, a folder transformers saved), or a tinylm checkpoint or run folder
    (its best.pt). The checkpoint file is None for a model transformers loaded."""
    if str(source) == "gpt2" or (Path(source) / "config.json").is_file():
        from ..interop.hf_gpt2 import from_hf_gpt2
        from ..tokenizers.gpt2 import BPETokenizer

        offline = (f"Offline, point {option} at a folder transformers saved (GPT2LMHeadModel.save_pretrained) or at a "
                   "tinylm checkpoint made from one (python -m tinylm.interop import --hf FOLDER --out gpt2.pt)")
        if str(source) == "gpt2" and os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0"):
            raise PretrainedUnavailable(f"{option} gpt2 downloads OpenAI's GPT-2 124M from Hugging Face once, but "
                                        f"HF_HUB_OFFLINE is set. {offline}.")
        try:
            model = from_hf_gpt2(str(source))
        except OSError as error:
            raise PretrainedUnavailable(f"{option} {source}: GPT-2 could not be loaded (it needs the network once). "
                                        f"{offline}. ({str(error).splitlines()[0][:200]})") from None
        return model, BPETokenizer("gpt2"), f"GPT-2 through transformers ({source})", None
    path = Path(source)
    checkpoint = checkpoint_file(path)
    model, tokenizer, _ = load_model(checkpoint)
    return model, tokenizer, shown(path), checkpoint


def weights_digest(model) -> str:
    """A digest of a model's weights (their names, shapes, dtypes and values): what tells a retrained base from the
    one a run started from, wherever either lies."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(value.shape)}:{value.dtype}".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]

