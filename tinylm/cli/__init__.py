"""The command lines: argument parsing, progress and messages around the library, one module per command.

Each command runs as `python -m tinylm.<command>`, as `python -m tinylm <command>`, or as `tinylm <command>`
(the console script). Every one ends through `tinylm.cli.errors.run_cli`, so an error it anticipates is one
line and an exit status, never a traceback. The library never imports this package.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
import types

# command -> what it does (the first line of `tinylm --help`); each is tinylm/cli/<command>.py, but the three
# post-training methods share tinylm/cli/post_training.py
COMMANDS = {
    "prepare": "download (or copy from the mirror) and tokenize a dataset, once",
    "train": "train a track's model, with progress and an epilogue",
    "sample": "generate text from a checkpoint, streamed",
    "eval": "loss, bits per byte and benchmarks (CORE, the harness)",
    "bench": "measure speed (training, compile, decoding, BPE), race the speedrun",
    "interop": "import and export weights (Hugging Face, llama2.c)",
    "sft": "turn a pretrained model into a chat model (SFT)",
    "dpo": "tune a chat model on preference pairs (DPO)",
    "grpo": "reinforcement learning (GRPO) on problems a program checks",
    "chat": "chat with a fine-tuned model in the terminal",
    "serve": "chat with a fine-tuned model in a web page",
}

POST_TRAINING = ("sft", "dpo", "grpo")

EXAMPLES = ("python -m tinylm train shakespeare-char",
            'python -m tinylm sample --ckpt runs/shakespeare-char-cpu --prompt "ROMEO:"',
            "python -m tinylm train --help")
USAGE = ("usage: tinylm <command> [options]   (tinylm <command> --help for its options)\n\ncommands:\n"
         + "\n".join(f"  {name:<9} {what}" for name, what in COMMANDS.items())
         + "\n\nexamples:\n" + "\n".join(f"  {line}" for line in EXAMPLES))


CLOSED_PIPE_STATUS = 128 + 13  # what the shell reports for a Unix tool that SIGPIPE ended (`yes | head -1`)


@contextlib.contextmanager
def quiet_when_the_reader_leaves():
    """A reader that closes the command's output before it ends (`python -m tinylm.sample ... | head`) ends the command
    with no message and exit status 141, as Unix tools end, instead of a traceback or an error line."""
    try:
        try:
            yield
        finally:
            sys.stdout.flush()  # what is still buffered meets the closed pipe here, not in Python's flush at exit
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):  # Python flushes stdout again at exit: let that go nowhere
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(CLOSED_PIPE_STATUS)


def run(command: str, argv: list[str] | None = None) -> None:
    """Start `command`'s command line (`python -m tinylm.<command>` calls this). Loading torch takes a second or
    two; a Ctrl-C meanwhile ends the program as quietly as one during the work (nothing was done yet)."""
    try:
        module = command_line(command)
    except KeyboardInterrupt:
        print(f"interrupted while {command} was starting: nothing was done", file=sys.stderr)
        raise SystemExit(130) from None
    module.cli(argv)


def command_line(command: str):
    """`command`'s command line: its module, with parse_args(argv), main(argv) and cli(argv); the three post-training
    methods' module (tinylm/cli/post_training.py) with those bound to the method."""
    if command not in POST_TRAINING:
        return importlib.import_module(f"tinylm.cli.{command}")
    shared = importlib.import_module("tinylm.cli.post_training")
    return types.SimpleNamespace(**{name: functools.partial(getattr(shared, name), command)
                                    for name in ("parse_args", "main", "cli")})


def main(argv: list[str] | None = None) -> None:
    """`tinylm <command> ...` and `python -m tinylm <command> ...`: run that command's command line."""
    argv = sys.argv[1:] if argv is None else list(argv)
    with quiet_when_the_reader_leaves():
        if not argv or argv[0] in ("-h", "--help"):
            print(USAGE)
            return
        command, rest = argv[0], argv[1:]
        if command not in COMMANDS:
            print(f"error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}", file=sys.stderr)
            raise SystemExit(2)
        sys.argv[0] = f"tinylm {command}"
        run(command, rest)
