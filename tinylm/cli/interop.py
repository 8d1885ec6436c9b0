"""Command line: import Hugging Face GPT-2 / Llama folders and llama2.c `.bin`
files as tinylm checkpoints, and export tinylm checkpoints to them and to GGUF
(the conversions are tinylm.interop's).

    python -m tinylm.interop import --hf path/to/hf_folder --out runs/gpt2/last.pt
    python -m tinylm.interop import --llama2c stories15M.bin --tokenizer tokenizer.model --out stories15M.pt
    python -m tinylm.interop export --ckpt runs/tinystories-gpu --out hf/tinystories [--format hf|gguf|llama2c]

An HF folder's config.json says whether it holds GPT-2 or Llama; `export` picks GPT-2 or Llama from the
checkpoint's architecture, writes the tokenizer beside the weights (tokenizer.json, or a SentencePiece
tokenizer.model), or writes one GGUF file for llama.cpp with --format gguf, or llama2.c's format with --format
llama2c. Neither command ever writes over a training run's checkpoint (the optimizer state --resume needs would
be lost), and an HF export refuses an --out that is a file: it writes a folder.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..config import GPTConfig
from ..interop.gguf_file import gguf_architecture, write_gguf
from ..interop.hf_gpt2 import from_hf_gpt2, hf_model_type, to_hf_gpt2
from ..interop.hf_llama import InteropError, from_hf_llama, to_hf_llama
from ..interop.llama2c import from_llama2c, write_llama2c
from ..interop.vocab_export import EXPORTED_KINDS, exported_vocab, with_rows
from ..paths import check_output_folder
from ..tokenizers.llama import SentencePieceTokenizer
from ..train.checkpoint import load_model, model_checkpoint, refuse_to_replace_training_run, save_checkpoint
from .console import CommandParser, HelpFormatter, begin, examples
from .errors import run_cli


def _is_gpt2_style(config: GPTConfig) -> bool:
    """Whether `export --format hf` writes GPT-2 (learned positions and LayerNorm) rather than Llama."""
    return config.position == "learned" and config.norm == "layernorm"


def run_export(args: argparse.Namespace) -> Path:
    if args.format == "hf":  # where a file is in the way, transformers writes nothing and raises nothing
        out = check_output_folder(args.out)
    else:
        file_name = "model.gguf" if args.format == "gguf" else "model.bin"  # as import writes a folder's last.pt
        out = args.out / file_name if args.out.is_dir() else args.out
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
        if tokenizer is None or sentencepiece is not None:
            raise InteropError(f"GGUF export needs the checkpoint's tokenizer to be one of {EXPORTED_KINDS}; this "
                               f"one's is {kind or 'missing'}")
        vocab = exported_vocab(tokenizer)
        path = write_gguf(with_rows(model, vocab.rows), vocab, out)
        print(f"wrote {path} ({path.stat().st_size:,} bytes, GGUF, {gguf_architecture(model)} with its {kind} "
              f"tokenizer): llama.cpp runs it (llama-completion -m {path} -no-cnv -p \"Once upon a time\" -n 100)")
        return path
    vocab = exported_vocab(tokenizer) if tokenizer is not None and sentencepiece is None else None
    exported = with_rows(model, vocab.rows) if vocab else model
    tokenizer_files = ", tokenizer.json, tokenizer_config.json, special_tokens_map.json" if vocab else ""
    if _is_gpt2_style(model.config):
        folder, loader = to_hf_gpt2(exported, out, vocab), "GPT2LMHeadModel"
    else:
        folder, loader = to_hf_llama(exported, out, sentencepiece or vocab), "LlamaForCausalLM"
        tokenizer_files = ", tokenizer.model" if sentencepiece else tokenizer_files
    print(f"wrote {folder} (config.json, model.safetensors{tokenizer_files}): {loader}.from_pretrained"
          f"({str(folder)!r}) loads it" + (", and AutoTokenizer.from_pretrained its tokenizer" if vocab else ""))
    if tokenizer is None:
        print("note: the checkpoint has no tokenizer, so none was written and the token ids are this model's own")
    return folder


def _import_model(args: argparse.Namespace):
    """(model, the tokenizer's description or None, where the weights came from) for `import`."""
    tokenizer = SentencePieceTokenizer.from_file(args.tokenizer) if args.tokenizer else None  # a bad path fails first
    if args.llama2c:
        model, source = from_llama2c(args.llama2c), f"llama2.c: {args.llama2c}"
    elif (model_type := hf_model_type(args.hf)) == "llama":
        bundled = Path(args.hf) / "tokenizer.model"  # Hugging Face Llama folders often carry their SentencePiece model
        if tokenizer is None and bundled.is_file():
            tokenizer = SentencePieceTokenizer.from_file(bundled)
        model, source = from_hf_llama(args.hf), f"transformers Llama: {args.hf}"
    elif model_type == "gpt2":
        model = from_hf_gpt2(args.hf)
        # tinylm's GPT-2 tokenizer has 50,257 tokens; a model with fewer cannot use it.
        gpt2 = {"kind": "bpe", "encoding": "gpt2"} if model.config.vocab_size >= 50257 else None
        return model, tokenizer.to_dict() if tokenizer else gpt2, f"transformers GPT-2: {args.hf}"
    else:
        raise InteropError(f"{args.hf} holds a {model_type!r} model; tinylm imports 'gpt2' and 'llama' (and "
                           "llama2.c files with --llama2c)")
    if tokenizer is not None and tokenizer.vocab_size > model.config.vocab_size:
        raise InteropError(f"the tokenizer has {tokenizer.vocab_size:,} tokens but the model only "
                           f"{model.config.vocab_size:,}: they do not belong together")
    return model, tokenizer.to_dict() if tokenizer else None, source


def run_import(args: argparse.Namespace) -> Path:
    out = args.out / "last.pt" if args.out.is_dir() else args.out
    refuse_to_replace_training_run(out)  # before the conversion's work: a run folder's last.pt is no place for it
    model, tokenizer, source = _import_model(args)
    save_checkpoint(out, model_checkpoint(model, tokenizer, step=0, elapsed=0.0, source=source))
    print(f"wrote {out}: {model.num_parameters():,} parameters, {model.config.n_layer} layers, "
          f"context {model.config.block_size}, " + (f"{tokenizer['kind']} tokenizer" if tokenizer else
          f"no tokenizer saved (none given, and a vocabulary of {model.config.vocab_size:,} is not GPT-2's)"))
    if tokenizer:
        print(f"next: python -m tinylm.sample --ckpt {out} --prompt \"Once upon a time\"   or   "
              f"python -m tinylm.eval loss --ckpt {out} --text FILE.txt")
    else:
        print("sampling and evaluation need a tokenizer: import again with --tokenizer tokenizer.model (SentencePiece)")
    return out


def parse_args(argv=None) -> argparse.Namespace:
    export_examples = ("python -m tinylm.interop export --ckpt runs/tinystories-gpu --out hf/stories",
                       "python -m tinylm.interop export --ckpt runs/tinystories-llama-cpu --out llama",
                       "python -m tinylm.interop export --ckpt runs/shakespeare-char-cpu --format gguf --out "
                       "shakespeare.gguf",
                       "python -m tinylm.interop export --ckpt stories15M.pt --format llama2c --out .")
    import_examples = ("python -m tinylm.interop import --hf gpt2 --out runs/gpt2/last.pt",
                       "python -m tinylm.interop import --llama2c stories15M.bin --tokenizer tokenizer.model "
                       "--out stories15M.pt",
                       "python -m tinylm.interop import --hf gpt2 --out gpt2.pt")
    # llama2.c's TinyStories models (stories15M, stories42M, stories110M) and Llama 2's tokenizer, where to get them
    downloads = ("llama2.c's\nstories15M.bin and its tokenizer.model:\n"
                 "  https://huggingface.co/karpathy/tinyllamas/resolve/main/stories15M.bin\n"
                 "  https://github.com/karpathy/llama2.c/raw/master/tokenizer.model")
    parser = CommandParser(prog="python -m tinylm.interop", description=__doc__.split("\n\n")[0],
                           formatter_class=HelpFormatter,
                           epilog=examples(export_examples[0], import_examples[0], import_examples[1]))
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    export = commands.add_parser("export", help="tinylm checkpoint -> Hugging Face folder, GGUF or llama2.c .bin",
                                 description="Write a tinylm checkpoint as a folder that transformers loads "
                                             "(GPT2LMHeadModel\nor LlamaForCausalLM, from the model's "
                                             "architecture, and AutoTokenizer), as a\nGGUF file that llama.cpp "
                                             "runs, or as a llama2.c .bin file.",
                                 formatter_class=HelpFormatter, epilog=examples(*export_examples))
    export.add_argument("--ckpt", required=True, help="checkpoint file or run folder (its best.pt, else last.pt)")
    export.add_argument("--out", required=True, type=Path,
                        help="folder for config.json, model.safetensors and the tokenizer (hf), or the file (gguf, "
                             "llama2c; a folder gets model.gguf or model.bin); never a training run's checkpoint")
    export.add_argument("--format", choices=["hf", "gguf", "llama2c"], default="hf",
                        help="hf: a transformers folder (default); gguf: one file for llama.cpp and Ollama; "
                             "llama2c: llama2.c's legacy .bin that run.c reads")
    export.set_defaults(run=run_export)
    imp = commands.add_parser("import", help="Hugging Face GPT-2/Llama or llama2.c .bin -> tinylm checkpoint",
                              description="Write a tinylm checkpoint (for load_model, tinylm.sample, tinylm.eval) "
                                          "with the\nweights of a transformers GPT-2 or Llama, or of a llama2.c .bin. "
                                          + downloads,
                              formatter_class=HelpFormatter, epilog=examples(*import_examples))
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--hf", metavar="NAME", help="a folder transformers reads (GPT-2 or Llama: its config.json "
                        "says which), "
                                     "or a Hub name when online")
    source.add_argument("--llama2c", type=Path, metavar="FILE",
                        help="a llama2.c checkpoint (.bin, the legacy format run.c reads)")
    imp.add_argument("--tokenizer", type=Path, metavar="FILE", help="a SentencePiece tokenizer.model to save with "
                     "the model "
                     "(llama2.c's TinyStories models use Llama 2's; default: an HF Llama folder's own, GPT-2's BPE for "
                     "GPT-2, else none)")
    imp.add_argument("--out", required=True, type=Path, help="checkpoint file to write (a folder gets last.pt); "
                     "never a training run's checkpoint, which --resume needs")
    imp.set_defaults(run=run_import)
    return parser.parse_args(argv)


def main(argv=None) -> Any:
    args = begin(parse_args(argv))
    return args.run(args)


def cli(argv=None) -> None:
    """`python -m tinylm.interop`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)

