"""What every command line shares: its parser (usage errors in one line, no abbreviated options), --help as it
shows it (each option with its default, then the description and examples), the argparse type of an integer option
that has a least sensible value, and `begin`, what every command does first once its options are parsed. Named
`console`, not `logging`, so that it never shadows the standard library's module.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable

from ..runtime import configure_backend, dtype_warning


def begin(args: argparse.Namespace, thread_note: bool = False) -> argparse.Namespace:
    """The one start of every command that computes: the process-wide settings for the device it will use
    (`tinylm.runtime.configure_backend`), and for a command that trains, the command line that resumes its run (an
    interrupted run prints it: `tinylm.train.progress.RESUME_COMMAND`). A command without --device computes on the
    CPU. Returns `args`.

    `thread_note`: when fewer CPU threads were set than PyTorch would have used, say so and why on stderr, just before
    the command's first output (an error found while its arguments are checked stays the only line); for a command
    whose figures or time budget depend on the threads (bench, and those that train, whose header shows the count:
    `tinylm.train.progress.cpu_threads_note`). The others' results do not depend on them."""
    note = configure_backend(getattr(args, "device", "cpu"))
    if note and thread_note:
        sys.stdout = _NoteBeforeOutput(sys.stdout, f"note: {note}")
    if resume_command := getattr(args, "resume_command", None):
        from ..train.progress import RESUME_COMMAND

        RESUME_COMMAND.set(resume_command)
    return args


def warn_if_slow(device, dtype) -> None:
    """Say on stderr, before the output (stdout carries the figures or the text), when `dtype` is slow on `device`
    (`tinylm.runtime.dtype_warning`: bf16 where bf16 is slow, float16 on a CPU without its kernels)."""
    if warning := dtype_warning(device, dtype):
        print(warning, file=sys.stderr, flush=True)


def end() -> None:
    """What `begin` leaves pending ends with the command: a note that no output followed is dropped."""
    if isinstance(sys.stdout, _NoteBeforeOutput):
        sys.stdout = sys.stdout.stream


class _NoteBeforeOutput:
    """sys.stdout while a command runs: the note goes to stderr just before the command's first output. It stays
    sys.stdout until `end()`: replacing sys.stdout from inside its own write would free it while print() still writes
    through it (print holds no reference of its own), which crashes the interpreter."""

    def __init__(self, stream, note: str):
        self.stream, self.note = stream, note

    def write(self, text: str) -> int:
        if text and self.note is not None:
            print(self.note, file=sys.stderr, flush=True)
            self.note = None
        return self.stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self.stream, name)


def resume_command(prog: str, argv: list[str]) -> str:
    """The command line that resumes the run `prog argv` trains: the same options, --overwrite dropped and --resume
    added."""
    kept = [arg for arg in argv if arg != "--overwrite"]
    return shlex.join([*prog.split(), *kept, *([] if "--resume" in kept else ["--resume"])])


class CommandParser(argparse.ArgumentParser):
    """argparse's parser with the course's form of error: a mistyped option or value is one line on stderr,
    `<command>: error: <what argparse found>; see <command> --help`, and exit status 2 (argparse's status for a usage
    error), instead of the whole usage block before that line. No abbreviation of an option is taken (`--max-step`
    is an error, not --max-steps), and --help is laid out by `HelpFormatter`. Subcommands' parsers are of this class
    too."""

    def __init__(self, *args, **kwargs):
        self.subcommands = None  # what add_subparsers returned, for a command that has subcommands
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def add_subparsers(self, **kwargs) -> argparse.Action:
        self.subcommands = super().add_subparsers(**kwargs)
        return self.subcommands

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_args(self, args=None, namespace=None) -> argparse.Namespace:
        """argparse's, except that an option the subcommand given does not take is that subcommand's error (argparse
        reports it as the top command's), so the advice names the --help that lists what it takes; and that a
        subcommand's option written before the subcommand says where it goes (argparse would take its value for the
        subcommand: `invalid choice: '5'`). A command that trains gets `resume_command`: the command line that
        resumes its run."""
        args = sys.argv[1:] if args is None else list(args)
        self._check_order(args)
        namespace, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self._subcommand_parser(namespace).error(f"unrecognized arguments: {' '.join(unknown)}")
        if hasattr(namespace, "resume"):  # a command that trains: RunOptions.resume
            namespace.resume_command = resume_command(self.prog, args)
        return namespace

    def _check_order(self, args: list[str]) -> None:
        """A usage error for the first option other than --help that comes before the subcommand: a command with
        subcommands (eval, bench, interop) takes every other option after its subcommand."""
        commands = self.subcommands
        if commands is None:
            return
        for at, arg in enumerate(args):
            if arg in commands.choices:
                return
            if arg.startswith("-") and arg not in ("-h", "--help"):
                command = next((later for later in args[at:] if later in commands.choices), None)
                where = commands.choices[command] if command else self  # whose --help the advice names
                where.error(f"{arg} goes after the {str(commands.metavar).lower()}: "
                            f"{self.prog} {command or commands.metavar} {arg} ...")

    def _subcommand_parser(self, namespace: argparse.Namespace) -> argparse.ArgumentParser:
        commands = self.subcommands
        if commands is not None and getattr(namespace, commands.dest, None) in commands.choices:
            return commands.choices[getattr(namespace, commands.dest)]
        return self


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """--help as every tinylm command line shows it: each option with its default, and the description and the
    examples (the epilog) laid out as written. A default that is None or False is not shown: an option whose
    absence means something says so in its own help ("default: ...")."""

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        """One line: the command, what it cannot do without (positionals, required options), then [options] (argparse
        lists every option in the usage, a dozen lines for train's). Also the prefix of a subcommand's prog."""
        if usage is None:
            parts = [self._format_args(action, self._get_default_metavar_for_positional(action))
                     for action in actions if not action.option_strings]
            parts += [f"{action.option_strings[0]} {self._format_args(action, action.dest.upper())}"
                      for action in actions if action.option_strings and action.required]
            optional = any(action.option_strings and not action.required for action in actions)
            usage = " ".join([self._prog, *parts, *(["[options]"] if optional else [])])
        else:
            usage = usage % {"prog": self._prog}
        return f"{'usage: ' if prefix is None else prefix}{usage}\n\n"

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.default is False or "default" in text:
            return text
        return super()._get_help_string(action)


def examples(*command_lines: str) -> str:
    """An epilog: example invocations, one per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in command_lines)


def command_parser(prog: str, doc: str, example_lines: tuple[str, ...], **options) -> CommandParser:
    """The parser of the command `prog`: described by the first paragraph of `doc` (its module's docstring), then
    `example_lines`."""
    return CommandParser(prog=prog, description=doc.split("\n\n")[0], epilog=examples(*example_lines), **options)


def add_subcommand(commands: argparse.Action, name: str, summary: str, description: str,
                   example_lines: tuple[str, ...], parents: tuple = ()) -> CommandParser:
    """A subcommand (or mode) of `commands` (what add_subparsers returned), listed in its command's --help with
    `summary`; its own --help shows `description`, then `example_lines`."""
    return commands.add_parser(name, parents=list(parents), help=summary, description=description,
                               epilog=examples(*example_lines))


def int_at_least(minimum: int, advice: str = "") -> Callable[[str], int]:
    """An argparse `type`: an integer >= minimum. Anything else is a usage error (exit status 2, nothing run) that
    says why, e.g. `argument --num-samples: must be an integer >= 1, got -2`, then `advice` if given."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}"
                                             + (f"; {advice}" if advice else ""))
        return value

    return parse


positive_int = int_at_least(1)  # a count of things the command makes or measures: 0 would do nothing
