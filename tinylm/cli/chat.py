"""Command line: chat with a fine-tuned model in the terminal, replies streamed.

In the REPL, /reset starts a new conversation, Ctrl-C stops a reply, and /exit (or Ctrl-D) leaves.
--ckpt takes a chat model's checkpoint or run folder (`CHAT_MODEL_COMMAND` makes one); the sampler options
are `sample`'s. The conversation is a tinylm.serve.session.ChatSession: the oldest exchanges make room when it outgrows
the context, the system prompt stays.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..serve.session import ChatSession
from ..tokenizers.chat_template import DEFAULT_SYSTEM_PROMPT, ContextOverflow
from ..train.checkpoint import CheckpointError
from .console import CommandParser, HelpFormatter, begin, examples, int_at_least
from .errors import run_cli
from .sample import add_sampling_options, check_sampling_options, load_generation_model

# The command that makes a chat model (chat fine-tuning), which chat's and serve's advice names.
CHAT_MODEL_COMMAND = "python -m tinylm.sft"


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """The fine-tuned --ckpt, `python -m tinylm.sample`'s sampler and device options, the longest reply and the
    system prompt: for chat and serve."""
    parser.add_argument("--ckpt", required=True, help=f"a chat model's checkpoint or run folder ({CHAT_MODEL_COMMAND})")
    parser.add_argument("--max-new-tokens", type=int_at_least(1), metavar="N",
                        help="longest reply (default: 256 or half the context)")
    add_sampling_options(parser, "reply")
    parser.add_argument("--system", default=DEFAULT_SYSTEM_PROMPT, metavar="TEXT",
                        help="the system prompt ('' for none)")


def session_from_args(args: argparse.Namespace) -> ChatSession:
    """The ChatSession that chat and serve talk through: --ckpt, the sampler options (checked before it loads) and
    the system prompt."""
    check_sampling_options(args)
    if not any(path.is_file() for path in (Path(args.ckpt), Path(args.ckpt) / "best.pt", Path(args.ckpt) / "last.pt")):
        raise CheckpointError(f"no chat model at {args.ckpt}; make one with {CHAT_MODEL_COMMAND} (its run folder is "
                              "the --ckpt to give), or check the path")
    model, tokenizer = load_generation_model(args)
    return ChatSession(model, tokenizer, args.system, args.max_new_tokens, temperature=args.temperature,
                       top_k=args.top_k, top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed,
                       use_cache=not args.no_cache)


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.chat", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.chat --ckpt runs/sft-stories-cpu",
                        "python -m tinylm.chat --ckpt runs/sft-stories-cpu --temperature 0 --system 'Be brief.'",
                        "python -m tinylm.chat --ckpt runs/sft-stories-cpu/best.pt --max-new-tokens 64 --seed 1"))
    add_sampler_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> ChatSession:
    args = begin(parse_args(argv))
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
    """`python -m tinylm.chat`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)

