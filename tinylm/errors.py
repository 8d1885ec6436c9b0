"""The one root of every error tinylm anticipates, so that a command line can turn all of them into one line.

An anticipated error is one a person can fix: a bad option or file, a missing download, a full disk, a GPU this
machine lacks. tinylm raises each as a subclass of `TinyLMError` whose message says what happened and what to do;
`tinylm.cli.errors` prints that message as `error: ...` and exits with status 1, and leaves every other exception
(a bug) its traceback. Each subclass also derives from the built-in type that describes it (`InputError` is a
ValueError, `MissingFile` a FileNotFoundError), so code that catches the built-in types keeps working.

Errors that the operating system or torch raise (a full disk, CUDA out of memory) are not tinylm's and keep their
own types; the command line adds the advice for them.
"""

from __future__ import annotations


class TinyLMError(Exception):
    """An error tinylm anticipates; its message says what happened and what to do about it, on one line."""


class InputError(TinyLMError, ValueError):
    """A value tinylm cannot use: an option, an argument, or what a file holds. The message names the value and one
    that works."""


class MissingFile(TinyLMError, FileNotFoundError):
    """A file or folder tinylm needs is not there; the message says which command or option makes or names it."""
