"""Command line: a chat page for a chat model, and OpenAI's API for any model.

The server, its page and what it accepts are tinylm.serve.server's; this is the command line around it: the options
(the sampler's are `python -m tinylm.chat`'s), the checkpoint loaded as chat loads it, and where to open the page.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from ..serve.server import ChatServer
from ..tokenizers.chat_template import chat_token_ids
from .chat import add_sampler_options, model_from_args, session_for
from .console import begin, command_parser, positive_int
from .errors import run_cli
from .flags import add_ckpt
from .options import positive_float


def port_number(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0 picks any free port)")
    return port


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser("python -m tinylm.serve", __doc__, (
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --port 8000",
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --host 0.0.0.0",
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --max-concurrent 2",
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --port 0 --quiet"),
        usage="%(prog)s --ckpt CKPT [--port PORT] [--host HOST] [options]")
    add_ckpt(parser)
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 opens it to all, unauthenticated")
    parser.add_argument("--max-chars", type=positive_int, default=4000, metavar="N",
                        help="longest conversation, in characters")
    parser.add_argument("--max-concurrent", type=positive_int, default=4, metavar="N",
                        help="replies generated at once")
    parser.add_argument("--idle-timeout", type=positive_float, default=30.0, metavar="S",
                        help="seconds for a request's head, then body")
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    chat = parser.add_argument_group("the options of python -m tinylm.chat (its --help says what they do)")
    add_sampler_options(chat)
    for action in chat._group_actions:  # listed by name only, to keep this --help to one screen
        action.help = argparse.SUPPRESS
    chat.description = textwrap.fill(", ".join(action.option_strings[0] for action in chat._group_actions), 76)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = begin(parse_args(argv))
    model, tokenizer = model_from_args(args)
    session = session_for(args, model, tokenizer) if chat_token_ids(tokenizer) is not None else None
    replies = f", replies up to {session.max_new_tokens}" if session else " (a base model: completions only)"
    server = ChatServer((args.host, args.port), session, args.max_chars, args.max_concurrent,
                        info=f"{args.ckpt}: context {model.config.block_size} tokens{replies}", quiet=args.quiet,
                        idle_timeout=args.idle_timeout, model=model, tokenizer=tokenizer, name=Path(args.ckpt).name)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL
    where = f"http://{host}:{server.port}"
    page = "the chat page" if session else "a base model, no chat page"
    print(f"serving {args.ckpt} at {where}/ ({page}; OpenAI's API at {where}/v1; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # uvicorn has closed the connections; the command ends as Ctrl-C ends any
        print("stopped", flush=True)
        raise
    finally:
        server.server_close()


def cli(argv=None) -> None:
    """`python -m tinylm.serve`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)
