"""Command line: a chat page for a chat model, and OpenAI's API for any model.

The server, its page and what it accepts are tinylm.serve.server's; this is the command line around it: the options
(the sampler's are `python -m tinylm.chat`'s), the checkpoint loaded as chat loads it, and where to open the page.
"""

from __future__ import annotations

import argparse
import functools
import textwrap
from pathlib import Path

from ..serve.server import ChatServer, ServeOptions
from ..tokenizers.chat_template import chat_token_ids
from .chat import add_sampler_options, chat_options_from, model_from_args, session_for
from .console import begin, command_parser
from .errors import run_cli
from .flags import add_ckpt
from .options import add_options, options_from


class ListedByName:
    """An argument group whose options --help lists by their first flag only, in the group's description."""

    def __init__(self, group):
        self.group, self.flags = group, []

    def add_argument(self, *names, **settings):
        self.flags.append(names[0])
        return self.group.add_argument(*names, **{**settings, "help": argparse.SUPPRESS})


def parse_args(argv=None) -> argparse.Namespace:
    parser = command_parser("python -m tinylm.serve", __doc__, (
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --port 8000",
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --host 0.0.0.0",
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --max-concurrent 2",
        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --port 0 --quiet"),
        usage="%(prog)s --ckpt CKPT [--port PORT] [--host HOST] [options]")
    add_ckpt(parser)
    add_options(parser, ServeOptions, {})
    chat = ListedByName(parser.add_argument_group("the options of python -m tinylm.chat (its --help says what "
                                                  "they do)"))
    add_sampler_options(chat)  # listed by name only, to keep this --help to one screen
    chat.group.description = textwrap.fill(", ".join(chat.flags), 76, break_on_hyphens=False)
    args = chat_options_from(parser, parser.parse_args(argv))
    args.serving = options_from(parser, args, ServeOptions)
    return args


def main(argv=None) -> None:
    args = begin(parse_args(argv))
    model, tokenizer = model_from_args(args)
    session = session_for(args, model, tokenizer) if chat_token_ids(tokenizer) is not None else None
    replies = f", replies up to {session.max_new_tokens}" if session else " (a base model: completions only)"
    replies += "; a calculator answers <<expression=" if session and args.chat.calculator else ""
    ckpt = Path(args.ckpt).resolve()
    served_name = ckpt.parent.name if ckpt.is_file() else ckpt.name  # the id in /v1/models: runs/x/best.pt is x
    server = ChatServer(args.serving, session, f"{args.ckpt}: context {model.config.block_size} tokens{replies}",
                        model, tokenizer, served_name)
    host = args.serving.host
    host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
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


cli = functools.partial(run_cli, main)  # what `python -m tinylm.serve` runs
