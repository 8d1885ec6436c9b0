"""Command line: a small web demo where a visitor chats with a fine-tuned model, answers streamed as they are made.

    python -m tinylm.serve --ckpt runs/chat-cpu [--port 8000] [--host 127.0.0.1] [--max-chars 4000]
        [--max-concurrent 4] [sampler options of python -m tinylm.chat]

The server, its page and what it accepts are tinylm.serve.server's; this is the command line around it: the
options, the checkpoint loaded as `python -m tinylm.chat` loads it, and where to open the page.
"""

from __future__ import annotations

import argparse

from ..serve.server import ChatServer
from .chat import add_sampler_options, session_from_args
from .console import HelpFormatter, examples
from .errors import run_cli


def port_number(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be 0..65535 (0 picks any free port)")
    return port


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tinylm.serve", description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter,
        epilog=examples("python -m tinylm.serve --ckpt runs/chat-cpu --port 8000",
                        "python -m tinylm.serve --ckpt runs/chat-cpu --host 0.0.0.0 --max-concurrent 2"))
    parser.add_argument("--ckpt", required=True, help="fine-tuned checkpoint or run folder (python -m tinylm.finetune)")
    parser.add_argument("--port", type=port_number, default=8000, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to let other machines connect")
    parser.add_argument("--max-chars", type=count, default=4000,
                        help="longest conversation accepted, in characters")
    parser.add_argument("--max-concurrent", type=count, default=4, help="replies generated at the same time")
    add_sampler_options(parser)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    session = session_from_args(args)
    server = ChatServer((args.host, args.port), session, args.max_chars, args.max_concurrent,
                        info=f"{args.ckpt}: context {session.model.config.block_size} tokens, replies up to "
                             f"{session.max_new_tokens}")
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    print(f"serving {args.ckpt} at http://{host}:{port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", flush=True)
    finally:
        server.server_close()


def cli(argv=None) -> None:
    """`python -m tinylm.serve`: main(), its anticipated errors one line each (tinylm.cli.errors)."""
    run_cli(main, argv)


if __name__ == "__main__":
    cli()
