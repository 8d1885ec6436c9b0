"""Command line: a terminal chat with a fine-tuned model, the replies streamed as they are produced.

    python -m tinylm.chat --ckpt runs/chat-cpu [--system "You are a helpful assistant."] [--max-new-tokens N]
        [--temperature 0.8] [--top-k 40] [--top-p 0.95] [--repetition-penalty 1.1] [--seed 1] [--no-cache]

In the REPL, /reset starts a new conversation, Ctrl-C stops a reply, and /exit (or Ctrl-D) leaves.
--ckpt takes a fine-tuned checkpoint or run folder (python -m tinylm.finetune makes one); the sampler options
are `sample`'s. The conversation is a tinylm.chat.ChatSession: the oldest exchanges make room when it outgrows
the context, the system prompt stays.
"""

from __future__ import annotations

import argparse

from ..chat import ChatSession
from ..chat_template import DEFAULT_SYSTEM_PROMPT, ContextOverflow
from ..checkpoint import CheckpointError, load_model
from ..console import HelpFormatter, examples
from ..errors import run_cli
from ..runtime import resolve_device, resolve_dtype


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """The sampler and device options `python -m tinylm.sample` takes, for chat and serve."""
    parser.add_argument("--max-new-tokens", type=int, help="longest reply (default: 256 or half the context)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 means greedy")
    parser.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=float, default=1.0, help="sample among the most likely tokens that make up p")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="above 1 discourages repeated tokens")
    parser.add_argument("--seed", type=int, default=None, help="reply i uses seed + i (default: unseeded)")
    parser.add_argument("--no-cache", action="store_true", help="recompute the whole context at every token (slow)")
    parser.add_argument("--device", help="e.g. cpu, cuda, mps (default: the best available)")
    parser.add_argument("--dtype", default="float32", choices=["auto", "float32", "bfloat16", "float16"],
                        help="the weights' dtype while generating")
    parser.add_argument("--system", default=DEFAULT_SYSTEM_PROMPT, help="the system prompt ('' for none)")


def session_from_args(args: argparse.Namespace) -> ChatSession:
    if args.top_k is not None and args.top_k < 1:
        raise ValueError("--top-k must be at least 1; leave it out to sample from every token")
    device = resolve_device(args.device)
    model, tokenizer, _ = load_model(args.ckpt, device)
    if tokenizer is None:
        raise CheckpointError(f"{args.ckpt} carries no tokenizer, so its ids cannot be turned into text")
    model.to(resolve_dtype(device, args.dtype))
    return ChatSession(model, tokenizer, args.system, args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                       use_cache=not args.no_cache)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.chat", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.chat --ckpt runs/chat-cpu",
                        "python -m tinylm.chat --ckpt runs/chat-cpu --temperature 0 --system 'Answer briefly.'"))
    parser.add_argument("--ckpt", required=True, help="fine-tuned checkpoint or run folder (python -m tinylm.finetune)")
    add_sampler_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> ChatSession:
    args = parse_args(argv)
    session = session_from_args(args)
    print(f"chatting with {args.ckpt} (context {session.model.config.block_size} tokens; "
          "/reset starts over, /exit or Ctrl-D leaves)", flush=True)
    while True:
        try:
            text = input("you> ").strip()
        except EOFError:
            print(flush=True)
            return session
        if text in ("/exit", "/quit"):
            return session
        if text == "/reset":
            session.reset()
            print("(a new conversation)", flush=True)
            continue
        if not text:
            continue
        try:
            pieces = session.reply(text)
            print("bot> ", end="", flush=True)
            for piece in pieces:
                print(piece, end="", flush=True)
            print(flush=True)
        except ContextOverflow as error:
            print(f"(not sent: {error})", flush=True)
        except KeyboardInterrupt:  # Ctrl-C during a reply stops it; the conversation goes on without it
            print("\n(reply stopped; it is not part of the conversation)", flush=True)


def cli(argv=None) -> None:
    """`python -m tinylm.chat`: main(), its anticipated errors one line each (tinylm.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
