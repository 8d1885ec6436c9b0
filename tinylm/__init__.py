"""tinylm: the package behind the course notebooks — build and train GPT-style models from scratch.

The package is laid out by stage, so that its folder listing is the architecture, each stage importing only those before
it and the shared modules named after them: `tokenizers` (text to ids, the chat template), `data` (datasets to token
files and batches), `model` (the network and its parts, LoRA adapters too), `generate` (decoding and samplers), `eval`
(loss, bits per byte, HellaSwag), `train` (the loop, the one run skeleton, recipes, checkpoints), `interop` (weights to
and from Hugging Face and llama2.c), `posttrain` (SFT, DPO and GRPO), `serve` (a chat in the terminal or a web page),
`bench` (speed measurements), `course` (what the notebooks use beside the model) and `cli` (the command lines). `errors`
(the one root of every anticipated error), `config` (the model and training configs), `runtime` (profile, device,
precision), `paths` (where files go), `download` (files by URL and sha256, or from the offline mirror) and `distributed`
(torchrun's processes) serve every stage. Each command is a package of its own name whose `__main__` starts it:
`python -m tinylm.train`, `python -m tinylm.sft`, ...

The names below are importable from `tinylm` itself. They load on first use, so `import tinylm` stays quick and
imports neither matplotlib nor datasets nor transformers.
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
