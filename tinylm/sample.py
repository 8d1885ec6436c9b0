"""Command line: generate text from a trained checkpoint.

    python -m tinylm.sample --ckpt runs/shakespeare-char-cpu --prompt "ROMEO:" [--max-new-tokens 300]
        [--temperature 0.8] [--top-k 40] [--seed 1] [--num-samples 1]

--ckpt takes a checkpoint file or a run folder (its best.pt, else last.pt).
"""

from __future__ import annotations

import argparse

from .checkpoint import CheckpointError, load_model
from .generate import generate_text
from .logging import run_cli
from .runtime import resolve_device
from .tokenizers import UnknownCharacterError


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(prog="python -m tinylm.sample", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", required=True, help="checkpoint file or run folder")
    parser.add_argument("--prompt", default="", help="text to continue (default: start from nothing)")
    parser.add_argument("--max-new-tokens", type=int, default=300)
    parser.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=1)
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    model, tokenizer, _ = load_model(args.ckpt, resolve_device(args.device))
    if tokenizer is None:
        raise CheckpointError(f"{args.ckpt} carries no tokenizer, so its ids cannot be turned into text")
    texts = []
    for i in range(args.num_samples):
        seed = None if args.seed is None else args.seed + i
        text = generate_text(model, tokenizer, args.prompt, args.max_new_tokens,
                             temperature=args.temperature, top_k=args.top_k, seed=seed)
        if args.num_samples > 1:
            print(f"--- sample {i + 1} ---")
        print(text, flush=True)
        texts.append(text)
    return texts


if __name__ == "__main__":
    run_cli(main, (CheckpointError, UnknownCharacterError, ValueError, OSError))
