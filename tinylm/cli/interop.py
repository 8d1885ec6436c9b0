"""Command line: import and export weights (Hugging Face, llama2.c, GGUF).

`import` writes a tinylm checkpoint from a transformers GPT-2 or Llama folder (its config.json says which) or a
llama2.c `.bin` file; `export` writes a checkpoint as a transformers folder (GPT-2 or Llama, by the model's
architecture, with its tokenizer), one GGUF file for llama.cpp, or llama2.c's format. The conversions are
tinylm.interop's. Neither writes over a training run's checkpoint, whose optimizer state --resume needs.
"""

from __future__ import annotations

import argparse
import functools
import shlex
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..interop import Export, Import
from ..interop.gguf_file import gguf_architecture, write_gguf
from ..interop.gguf_import import PUBLISHED_GGUF, from_gguf, gguf_path
from ..interop.hf_gpt2 import from_hf_gpt2, is_gpt2_style, to_hf_gpt2
from ..interop.hf_llama import InteropError, from_hf_llama, hf_config, to_hf_llama
from ..interop.hf_tokenizer import GPT2_TOKENIZER, assumed_gpt2_tokenizer, hf_tokenizer, is_gpt2_bpe
from ..interop.llama2c import from_llama2c, write_llama2c
from ..interop.vocab_export import exported_vocab, with_rows
from ..paths import check_output_folder, shown
from ..tokenizers.chat_template import chat_token_ids
from ..tokenizers.llama import SentencePieceTokenizer
from ..tokenizers.saved import tokenizer_from_dict
from ..train.checkpoint import load_model, model_checkpoint, refuse_to_replace_training_run, save_checkpoint
from ..train.options import read_settings
from ..train.recipes import TRACKS
from .console import add_subcommand, begin, command_parser
from .errors import run_cli
from .options import add_options, options_from


def run_export(args: Export) -> Path:
    if args.format == "hf":  # where a file is in the way, transformers writes nothing and raises nothing
        out = check_output_folder(args.out)
    else:
        out = args.file()
        refuse_to_replace_training_run(out)
    model, tokenizer, _ = load_model(args.ckpt)
    kind = tokenizer.to_dict()["kind"] if tokenizer is not None else None
    sentencepiece = tokenizer if isinstance(tokenizer, SentencePieceTokenizer) else None
    if args.format == "llama2c":
        path = write_llama2c(model, out)
        print(f"wrote {path} ({path.stat().st_size:,} bytes, llama2.c's legacy format): llama2.c's run.c runs it "
              f"(./run {path}), and `python -m tinylm.interop import --llama2c {path} --out FILE.pt` reads it back")
        if tokenizer is not None and sentencepiece is None:
            print(f"note: the checkpoint's tokenizer is {kind!r}, not SentencePiece, so run.c's tokenizer "
                  "(Llama 2's) does not match this model's token ids")
        return path
    if args.format == "gguf":
        vocab = exported_vocab(tokenizer)
        path = write_gguf(with_rows(model, vocab.rows), vocab, out)
        print(f"wrote {path} ({path.stat().st_size:,} bytes, GGUF, {gguf_architecture(model)} with its {kind} "
              f"tokenizer): llama.cpp runs it ({llama_cpp_command(path, _sample_prompt(Path(args.ckpt)))})")
        return path
    vocab = exported_vocab(tokenizer) if tokenizer is not None and sentencepiece is None else None
    exported = with_rows(model, vocab.rows) if vocab else model
    before = _stamps(out)
    if is_gpt2_style(model.config):
        folder, loader = to_hf_gpt2(exported, out, vocab), "GPT2LMHeadModel"
    else:
        folder, loader = to_hf_llama(exported, out, sentencepiece or vocab), "LlamaForCausalLM"
    written = sorted(name for name, stamp in _stamps(folder).items() if before.get(name) != stamp)
    print(f"wrote {folder} ({', '.join(written)}): {loader}.from_pretrained({str(folder)!r}) loads it"
          + (", and AutoTokenizer.from_pretrained its tokenizer" if vocab else ""))
    if tokenizer is None:
        print("note: the checkpoint has no tokenizer, so none was written and the token ids are this model's own")
    return folder


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    """Each file of `folder` by name, with what tells one version of it from another: a file an export writes
    replaces the one there (tinylm.paths.atomic_folder), so it is a new file."""
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in folder.iterdir() if path.is_file()}


def _sample_prompt(ckpt: Path) -> str:
    """The start of the text the checkpoint's run trained on, as its track's samples begin ("" where the run folder
    does not say which track it trained)."""
    try:
        settings = read_settings(ckpt if ckpt.is_dir() else ckpt.parent) or {}
    except InputError:  # a damaged settings.json says nothing of the track, and the export needs none
        settings = {}
    track = settings.get("options", {}).get("track") if settings.get("command") == "train" else None
    return TRACKS[track].sample_prompt if track in TRACKS else ""


def llama_cpp_command(path: Path, prompt: str) -> str:
    """The llama.cpp command that continues `prompt` with the GGUF file at `path`, the prompt written as llama.cpp
    reads it (it turns \\n into a newline); with no prompt, PROMPT stands for one: llama.cpp needs a first token, and
    these files start none of their own."""
    escaped = prompt.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
    return f"llama-completion -m {shlex.quote(str(path))} -no-cnv -n 100 -p " + (shlex.quote(escaped) if prompt
                                                                                  else "PROMPT")


def _import_model(args: Import) -> tuple[Any, dict | None, str]:
    """(model, the tokenizer's description or None, where the weights came from) for `import`."""
    tokenizer = SentencePieceTokenizer.from_file(args.tokenizer_model) if args.tokenizer_model else None  # fails first
    if args.gguf:
        model, tokenizer = from_gguf(gguf_path(args.gguf))
        return model, tokenizer.to_dict(), f"GGUF: {args.gguf}"
    if args.llama2c:
        model, source = from_llama2c(args.llama2c), f"llama2.c: {args.llama2c}"
    elif (model_type := hf_config(args.hf).model_type) == "llama":
        bundled = Path(args.hf) / "tokenizer.model"  # Hugging Face Llama folders often carry their SentencePiece model
        if tokenizer is None and bundled.is_file():
            tokenizer = SentencePieceTokenizer.from_file(bundled)
        model, source = from_hf_llama(args.hf), f"transformers Llama: {args.hf}"
        tokenizer = tokenizer or hf_tokenizer(args.hf)
    elif model_type == "gpt2":
        model, source = from_hf_gpt2(args.hf), f"transformers GPT-2: {args.hf}"
        if tokenizer is None and (tokenizer := hf_tokenizer(args.hf)) is not None and is_gpt2_bpe(tokenizer):
            print("tokenizer: GPT-2's BPE (the folder's tokenizer.json holds GPT-2's vocabulary and merges)")
            return model, GPT2_TOKENIZER, source
        if tokenizer is None:
            tokenizer, note = assumed_gpt2_tokenizer(args.hf, model.config.vocab_size)
            if note:
                print(note)
            return model, tokenizer, source
    else:
        raise InteropError(f"{args.hf} holds a {model_type!r} model; tinylm imports 'gpt2' and 'llama' (and "
                           "llama2.c files with --llama2c)")
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise InteropError(f"the tokenizer has {tokenizer.vocab_size:,} tokens but the model only "
                           f"{model.config.vocab_size:,}: they do not belong together")
    return model, tokenizer.to_dict() if tokenizer else None, source


def run_import(args: Import) -> Path:
    out = args.checkpoint()
    refuse_to_replace_training_run(out)  # before the conversion's work: a run folder's last.pt is no place for it
    model, tokenizer, source = _import_model(args)
    save_checkpoint(out, model_checkpoint(model, tokenizer, step=0, elapsed=0.0, source=source))
    print(f"wrote {shown(out)}: {model.num_parameters():,} parameters, {model.config.n_layer} layers, "
          f"context {model.config.block_size}, " + (f"{tokenizer['kind']} tokenizer" if tokenizer else
          f"no tokenizer saved (none given, and a vocabulary of {model.config.vocab_size:,} is not GPT-2's)"))
    if tokenizer and chat_token_ids(tokenizer_from_dict(tokenizer)) is not None:
        print(f"next: python -m tinylm.chat --ckpt {shown(out.parent)}   or   python -m tinylm.serve --ckpt "
              f"{shown(out.parent)}")
    elif tokenizer:
        print(f"next: python -m tinylm.sample --ckpt {out} --prompt \"Once upon a time\"   or   "
              f"python -m tinylm.eval loss --ckpt {out} --text FILE.txt")
    else:
        print("sampling and evaluation need a tokenizer: import again with --tokenizer-model tokenizer.model "
              "(SentencePiece)")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    export_examples = ("python -m tinylm.interop export --ckpt runs/tinystories-gpu --out hf/stories",
                       "python -m tinylm.interop export --ckpt runs/tinystories-llama-cpu --out llama",
                       "python -m tinylm.interop export --ckpt stories15M.pt --format gguf --out .",
                       "python -m tinylm.interop export --ckpt stories15M.pt --format llama2c --out .")
    import_examples = ("python -m tinylm.interop import --hf gpt2 --out runs/gpt2/last.pt",
                       "python -m tinylm.interop import --llama2c stories15M.bin --out stories15M.pt",
                       "python -m tinylm.interop import --hf gpt2 --out gpt2.pt")
    parser = command_parser("python -m tinylm.interop", __doc__,
                            (export_examples[0], import_examples[0], export_examples[2]))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = add_subcommand(commands, "export", "tinylm checkpoint -> Hugging Face folder, GGUF or llama2.c .bin",
                            "Write a tinylm checkpoint as a folder that transformers loads (GPT-2 or Llama,\n"
                            "by the model's architecture, and its tokenizer), as a GGUF file that llama.cpp\n"
                            "runs, or as a llama2.c .bin file.", export_examples)
    add_options(export, Export, {"written": "the folder (hf) or file (gguf, llama2c; a folder, or a path ending "
                                 "in /, gets model.gguf or model.bin)", "out_type": str})
    export.set_defaults(run=run_export, kind=Export)
    imp = add_subcommand(commands, "import", "Hugging Face GPT-2/Llama or llama2.c .bin -> tinylm checkpoint",
                         "Write a tinylm checkpoint with the weights of a transformers GPT-2 or Llama, or\n"
                         "of a llama2.c .bin such as stories15M.bin (with Llama 2's tokenizer.model):\n"
                         "  https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin\n"
                         "  https://github.com/karpathy/llama2.c/raw/master/tokenizer.model", import_examples)
    add_options(imp, Import, {"published": ", ".join(PUBLISHED_GGUF), "written": "the checkpoint (a folder gets "
                              "last.pt)", "out": "runs/NAME for --gguf, else required"})
    imp.set_defaults(run=run_import, kind=Import)
    args = parser.parse_args(argv)
    args.options = options_from(parser, args, args.kind)
    return args


def main(argv=None) -> Any:
    args = begin(parse_args(argv))
    return args.run(args.options)


cli = functools.partial(run_cli, main)  # what `python -m tinylm.interop` runs
