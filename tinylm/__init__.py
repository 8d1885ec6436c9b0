"""tinylm: the package behind the course notebooks — build and train GPT-style models from scratch.

Each module is one concept: `config` (shapes and recipes), `model`, `attention`, `norms`, `rope`, `mlp`
and `moe` (the network), `tokenizers` and `bpe`, `data`, `corpora`, `shards` and `download` (text to token
files to batches), `optim`, `trainer` and `distributed` (the loop, on one process or many), `checkpoint`,
`generate`, `sampling` and `kv_cache` (decoding), `playground` (generation and attention widgets), `plotting`,
`tracks` (the course's datasets and presets per profile), `course` (the notebooks' Colab badge and install
cell, and the runs one notebook borrows from another), `eval` and `hellaswag` (loss, bits per byte,
HellaSwag), `interop`, `interop_llama` and `llama2c` (weights from and to Hugging Face and llama2.c),
`chat_template`, `instruct`, `sft`, `chat_base` and `chat` (chat fine-tuning), `bench` (measurements).

The command lines live in `tinylm/cli/`, one module per command, and run as `python -m tinylm.<command>`:
prepare, train, sample, eval, bench, interop, finetune, chat and serve. They share `console` (what they print)
and `errors` (one error mapping).
"""

from .checkpoint import CheckpointError, load_checkpoint, load_model
from .config import GPT2_124M, ConfigError, GPTConfig, TrainConfig
from .generate import generate, generate_batch, generate_text, stream
from .kv_cache import KVCache
from .model import GPT
from .playground import attention_viewer, playground
from .runtime import resolve_device, resolve_dtype, resolve_profile
from .sampling import Sampling
from .tokenizers import BPETokenizer, CharTokenizer, UnknownCharacterError
from .tracks import get_track
from .trainer import Trainer, TrainingDiverged

__version__ = "0.1.0"

__all__ = [
    "GPT", "GPTConfig", "TrainConfig", "GPT2_124M", "ConfigError", "Trainer", "TrainingDiverged",
    "CharTokenizer", "BPETokenizer", "UnknownCharacterError", "generate", "generate_text",
    "generate_batch", "stream", "Sampling", "KVCache", "playground", "attention_viewer",
    "load_checkpoint", "load_model", "CheckpointError", "get_track",
    "resolve_profile", "resolve_device", "resolve_dtype",
]
