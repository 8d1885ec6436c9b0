"""Command line: chat with a fine-tuned model in the terminal, replies streamed.

In the conversation, /reset starts a new one, Ctrl-C stops a reply, and /exit (or Ctrl-D) leaves. When it outgrows
the context, its oldest exchanges make room (tinylm.serve.session.ChatSession); the system prompt stays.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from ..generate.calculator import Calculator, ToolText
from ..generate.sampling import Sampling
from ..serve.session import ChatOptions, ChatSession
from ..tokenizers.chat_template import ContextOverflow, default_system_prompt
from ..train.checkpoint import CheckpointError
from .console import begin, command_parser
from .errors import run_cli
from .flags import add_ckpt
from .options import add_options, options_from
from .sample import add_sampling_options, load_generation_model

TOOL_STYLE = "\033[36m{}\033[0m"  # the calculator's text in a terminal: cyan

# The command that makes a chat model (chat fine-tuning), which chat's and serve's advice names.
CHAT_MODEL_COMMAND = "python -m tinylm.sft"


def add_sampler_options(parser: argparse.ArgumentParser) -> None:
    """ChatOptions (the longest reply, the system prompt) and `python -m tinylm.sample`'s sampler and device options:
    for chat and serve."""
    add_options(parser, ChatOptions, {"max_new_tokens": "256 or half the context"})
    add_sampling_options(parser, "reply")


def chat_options_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """`args` with `sampling` and `chat`, the Sampling and ChatOptions its options make: an unusable value (a NaN
    --temperature, a --top-p outside (0, 1], ...) is refused by their rules before a checkpoint loads."""
    args.sampling, args.chat = options_from(parser, args, Sampling), options_from(parser, args, ChatOptions)
    return args


def model_from_args(args: argparse.Namespace):
    """(model, tokenizer) of --ckpt."""
    if not any(path.is_file() for path in (Path(args.ckpt), Path(args.ckpt) / "best.pt", Path(args.ckpt) / "last.pt")):
        raise CheckpointError(f"no chat model at {args.ckpt}; make one with {CHAT_MODEL_COMMAND} (its run folder is "
                              "the --ckpt to give), or check the path")
    return load_generation_model(args)


def session_for(args: argparse.Namespace, model, tokenizer) -> ChatSession:
    """A ChatSession with the sampler options and system prompt of `args`."""
    system = default_system_prompt(tokenizer) if args.chat.system is None else args.chat.system
    tool = {"tool": Calculator(tokenizer)} if args.chat.calculator else {}
    return ChatSession(model, tokenizer, system, args.chat.max_new_tokens, sampling=args.sampling,
                       use_cache=not args.no_cache, **tool)


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser("python -m tinylm.chat", __doc__, (
        "python -m tinylm.chat --ckpt runs/sft-stories-cpu",
        "python -m tinylm.chat --ckpt runs/sft-stories-cpu --temperature 0",
        "python -m tinylm.chat --ckpt runs/sft-stories-cpu --system 'Be brief.'",
        "python -m tinylm.chat --ckpt runs/sft-stories-cpu --max-new-tokens 64 --seed 1",
        "python -m tinylm.chat --ckpt runs/sft-multistep-cpu --calculator"))
    add_ckpt(parser)
    add_sampler_options(parser)
    return chat_options_from(parser, parser.parse_args(argv))


def main(argv=None) -> ChatSession:
    args = begin(parse_args(argv))
    session = session_for(args, *model_from_args(args))
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
            marker = ToolText() if args.chat.calculator else None
            for piece in pieces:
                parts = marker.parts(piece) if marker else [(piece, False)]
                for part, by_tool in parts:
                    styled = by_tool and sys.stdout.isatty()  # a file or pipe gets the text alone
                    print(TOOL_STYLE.format(part) if styled else part, end="", flush=True)
            print(flush=True)
        except ContextOverflow as error:
            print(f"(not sent: {error})", flush=True)
        except KeyboardInterrupt:  # Ctrl-C during a reply stops it; the conversation goes on without it
            print("\n(reply stopped; it is not part of the conversation)", flush=True)


cli = functools.partial(run_cli, main)  # what `python -m tinylm.chat` runs
