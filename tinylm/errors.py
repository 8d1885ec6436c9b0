"""The one root of every error tinylm anticipates, so that a command line can turn all of them into one line.

An anticipated error is one a person can fix: a bad option or file, a missing download, a GPU this machine lacks.
Its message says what happened and what to do; `tinylm.cli.errors` prints it as `error: ...` with exit status 1 and
leaves every other exception (a bug) its traceback. Each subclass also derives from the built-in type that describes
it (`InputError` is a ValueError), so that code catching the built-in types keeps working. Errors the operating
system or torch raise (a full disk, CUDA out of memory) keep their own types; the command line adds their advice.
"""

from __future__ import annotations


class TinyLMError(Exception):
    """An error tinylm anticipates; its message says what happened and what to do about it, on one line."""


class InputError(TinyLMError, ValueError):
    """A value tinylm cannot use: an option, an argument, or what a file holds. The message names the value and one
    that works."""


class MissingFile(TinyLMError, FileNotFoundError):
    """A file or folder tinylm needs is not there; the message says which command or option makes or names it."""
