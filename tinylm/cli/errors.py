"""The one place where a command line's error becomes a line a person can act on.

Every command runs its main() through `run_cli`: an error tinylm anticipates ends the program with `error: <what
happened>; <what to do>` on one line of stderr and exit status 1; anything else is a bug and keeps its traceback.
tinylm's own errors (`tinylm.errors.TinyLMError`) carry their advice, since the code that raises them knows what went
wrong; the operating system's and torch's only say what failed, so `describe` adds the advice for them here.
"""

from __future__ import annotations

import contextvars
import errno
import sys
from typing import Callable

import torch

from ..errors import TinyLMError
from . import quiet_when_the_reader_leaves
from .console import end


def _first_line(error: BaseException) -> str:
    """The message up to its first line break (torch's load errors run on for paragraphs)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


_OS_ADVICE = {
    errno.ENOSPC: "the disk is full: free some space, or write elsewhere (--out), and run again; a file that was "
                  "being replaced (a checkpoint, a token file) keeps its previous version",
    errno.EDQUOT: "your disk quota is used up: free some space, or write elsewhere (--out), and run again",
    errno.EROFS: "that file system is read-only: write elsewhere (--out)",
    errno.EACCES: "you may not write (or read) there: choose another path (--out) or fix its permissions",
    errno.EPERM: "you may not write (or read) there: choose another path (--out) or fix its permissions",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "part of that path is a file, not a folder: choose another path",
    errno.EEXIST: "a file of that name is in the way: choose another path, or move the file",
    errno.EISDIR: "that is a folder: give a file",
}


def _os_error(error: OSError) -> str:
    """An OSError without an errno carries a whole sentence; the system's say `[Errno 28] ...: 'path'`."""
    if error.errno is None:
        return _first_line(error)
    what = error.strerror or _first_line(error)
    where = f": {error.filename}" if error.filename is not None else ""
    advice = _OS_ADVICE.get(error.errno)
    return f"{what}{where}" + (f"; {advice}" if advice else "")


def _missing_package(error: ImportError) -> str | None:
    """An optional package that is not installed (transformers, sentencepiece, ...); a broken import inside
    tinylm is a bug."""
    name = error.name or getattr(error.__cause__, "name", None)
    if not name or name.split(".")[0] == "tinylm":
        return None
    message = _first_line(error)
    return message if "pip install" in message else f"{message}; install it: pip install {name.split('.')[0]}"


def describe(error: BaseException) -> str | None:
    """The one-line message for an anticipated error, or None for a bug."""
    if isinstance(error, TinyLMError):  # tinylm's own: the message already says what happened and what to do
        return _first_line(error)
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return (f"the GPU ran out of memory ({_first_line(error)}); use a smaller --batch-size or a smaller model, "
                "or free the GPU (nvidia-smi shows who holds it)")
    if isinstance(error, OSError):  # files and folders (disk full, read-only, a file where a folder belongs), network
        return _os_error(error)
    if isinstance(error, ImportError):
        return _missing_package(error)
    return None


def run_cli(main: Callable, argv: list[str] | None = None):
    """Run a command line's main(argv); an anticipated error ends it with `error: ...` and exit status 1, Ctrl-C with
    status 130 (the shell's code for SIGINT) and no traceback, once main has said what it saved, and a closed stdout
    quietly (`quiet_when_the_reader_leaves`). What main sets in context variables ends with it."""
    with quiet_when_the_reader_leaves():
        try:
            return contextvars.copy_context().run(main, argv)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:
            raise
        except Exception as error:  # SystemExit is no error: it passes
            message = describe(error)
            if message is None:
                raise
            sys.exit(f"error: {message}")
        finally:
            end()
