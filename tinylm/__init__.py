"""tinylm: the package behind the course notebooks, which build and train GPT-style models from scratch.

It is laid out by stage, each subpackage importing only the stages before it and the shared modules at the top
(errors, config, runtime, paths, download, distributed); CONTRIBUTING.md draws the layout. Each command is a package
of its own name whose `__main__` starts it: `python -m tinylm.train`, `python -m tinylm.sft`, ...

The names below are importable from `tinylm` itself. They load on first use, so `import tinylm` stays quick and
imports neither torch nor matplotlib, datasets or transformers.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "GPT": "tinylm.model.gpt", "KVCache": "tinylm.model.kv_cache",
    "GPTConfig": "tinylm.config", "TrainConfig": "tinylm.config", "GPT2_124M": "tinylm.config",
    "ConfigError": "tinylm.config",
    "Trainer": "tinylm.train.trainer", "TrainingDiverged": "tinylm.train.trainer",
    "load_checkpoint": "tinylm.train.checkpoint", "load_model": "tinylm.train.checkpoint",
    "CheckpointError": "tinylm.train.checkpoint", "get_track": "tinylm.train.recipes",
    "CharTokenizer": "tinylm.tokenizers.char", "UnknownCharacterError": "tinylm.tokenizers.char",
    "BPETokenizer": "tinylm.tokenizers.gpt2",
    "generate_batch": "tinylm.generate.decode",
    "generate_text": "tinylm.generate.stream", "stream": "tinylm.generate.stream",
    "Sampling": "tinylm.generate.sampling",
    "playground": "tinylm.course.playground", "attention_viewer": "tinylm.course.playground",
    "resolve_profile": "tinylm.runtime", "resolve_device": "tinylm.runtime", "resolve_dtype": "tinylm.runtime",
    "configure_backend": "tinylm.runtime", "set_up_notebook": "tinylm.course.notebooks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # once loaded, a plain attribute
        return value
    raise AttributeError(f"module 'tinylm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
