"""Command line: a small web demo where a visitor chats with a fine-tuned model,
answers streamed as they are made.

    python -m tinylm.serve --ckpt runs/sft-stories-cpu [--port 8000] [--host 127.0.0.1] [--max-chars 4000]
        [--max-concurrent 4] [--idle-timeout 30] [--quiet] [sampler options of python -m tinylm.chat]

The server, its page and what it accepts are tinylm.serve.server's; this is the command line around it: the
options, the checkpoint loaded as `python -m tinylm.chat` loads it, and where to open the page.
"""

from __future__ import annotations

import argparse

from ..serve.server import ChatServer
from .chat import add_sampler_options, session_from_args
from .console import CommandParser, HelpFormatter, begin, examples, int_at_least
from .errors import run_cli
from .options import positive_float


def port_number(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0 picks any free port)")
    return port


def parse_args(argv=None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m tinylm.serve", usage="%(prog)s --ckpt CKPT [--port PORT] [--host HOST] [options]",
        description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.serve --ckpt runs/sft-stories-cpu --port 8000",
                        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --host 0.0.0.0 --max-concurrent 2",
                        "python -m tinylm.serve --ckpt runs/sft-stories-cpu --port 0 --temperature 0.7 --quiet"))
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0: open to other machines, with no "
                        "authentication")
    parser.add_argument("--max-chars", type=int_at_least(1), default=4000, metavar="N",
                        help="longest conversation, in characters")
    parser.add_argument("--max-concurrent", type=int_at_least(1), default=4, metavar="N",
                        help="replies generated at once")
    parser.add_argument("--idle-timeout", type=positive_float, default=30.0, metavar="S",
                        help="seconds to send a request's head, and again its body")
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    add_sampler_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = begin(parse_args(argv))
    session = session_from_args(args)
    server = ChatServer((args.host, args.port), session, args.max_chars, args.max_concurrent,
                        info=f"{args.ckpt}: context {session.model.config.block_size} tokens, replies up to "
                             f"{session.max_new_tokens}", quiet=args.quiet, idle_timeout=args.idle_timeout)
    host = f"[{args.host}]" if ":" in args.host else args.host  # an IPv6 address in a URL
    print(f"serving {args.ckpt} at http://{host}:{server.port}/ (Ctrl-C stops)", flush=True)
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
