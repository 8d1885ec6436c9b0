"""Terminal lines for each kind of trainer record, every command line's --help, and where the commands live."""

import argparse
import contextvars
import importlib
import pkgutil
import re
import shlex
import subprocess
import sys

import pytest

import tinylm.cli
from tests.preloaded import run_module
from tinylm.train.progress import RESUME_COMMAND, format_record


def test_train_record_line_shows_step_loss_lr_and_throughput():
    line = format_record({"event": "train", "step": 42, "loss": 1.23456, "lr": 3e-4, "tokens_per_s": 12345.0,
                          "elapsed": 7.2, "skipped_steps": 0})
    assert "42" in line and "1.2346" in line and "3.00e-04" in line and "12.3k tok/s" in line
    assert "skipped" not in line
    with_skips = format_record({"event": "train", "step": 1, "loss": 1.0, "lr": 1e-3, "tokens_per_s": 1.0,
                                "elapsed": 0.0, "skipped_steps": 3})
    assert "3 fp16 steps skipped" in with_skips


def test_eval_and_final_lines_show_val_and_best_loss():
    for event in ("eval", "final"):
        line = format_record({"event": event, "step": 500, "val_loss": 1.5, "best_val_loss": 1.4, "elapsed": 3.0})
        assert event in line and "1.5000" in line and "1.4000" in line


def test_sample_and_interrupted_lines():
    assert "To be" in format_record({"event": "sample", "step": 10, "text": "To be"})
    interrupted = {"event": "interrupted", "step": 7, "checkpoint": "runs/x/last.pt"}
    assert format_record(interrupted) == "interrupted at step 7; saved runs/x/last.pt"  # a Trainer of one's own
    resume = "python -m tinylm.train shakespeare-char --resume"

    def formatted_in_a_command_that_trains():
        RESUME_COMMAND.set(resume)  # as tinylm.cli.console.begin sets it
        return format_record(interrupted)

    line = contextvars.copy_context().run(formatted_in_a_command_that_trains)
    assert line == f"interrupted at step 7; saved runs/x/last.pt; to resume: {resume}"
    assert format_record({"event": "other", "x": 1}) == str({"event": "other", "x": 1})


@pytest.mark.parametrize("command", ["train", "sft", "dpo", "grpo"])
def test_every_command_that_trains_knows_the_command_line_that_resumes_its_run(command):
    """Ctrl-C said "resume with --resume"; it now prints the whole command (tests/test_cli.py runs it): the user's,
    with --overwrite dropped and --resume added once."""
    parse_args = tinylm.cli.command_line(command).parse_args
    track = ["shakespeare-char"] if command == "train" else []
    options = ["--overwrite", "--out", "runs/a b", "--max-steps", "40"]
    assert shlex.split(parse_args([*track, *options]).resume_command) == [
        "python", "-m", f"tinylm.{command}", *track, "--out", "runs/a b", "--max-steps", "40", "--resume"]
    assert parse_args([*track, "--resume", "--max-steps", "40"]).resume_command.endswith("--resume --max-steps 40")
    assert not hasattr(tinylm.cli.command_line("sample").parse_args(["--ckpt", "x"]), "resume_command")


ABBREVIATED = {"train": ["shakespeare-char", "--max-step", "10"], "sft": ["--max-step", "10"],
               "dpo": ["--overwr"], "grpo": ["--res"], "sample": ["--ckpt", "x", "--max-new", "5"],
               "eval": ["loss", "--ckpt", "x", "--text", "t", "--batch", "2"], "chat": ["--ckpt", "x", "--temp", "0"],
               "serve": ["--ckpt", "x", "--po", "80"], "bench": ["train", "--step", "5"],
               "interop": ["export", "--ckpt", "x", "--out", "y", "--form", "hf"], "prepare": ["mirror", "--ou", "d"]}


@pytest.mark.parametrize("command", sorted(ABBREVIATED))
def test_an_abbreviated_option_is_a_one_line_usage_error(command, capsys):
    """argparse took `--max-step 10` for --max-steps, and `--res` for --resume; every command (and subcommand) now
    refuses an abbreviation: the option must be written whole."""
    argv = ABBREVIATED[command]
    with pytest.raises(SystemExit) as exited:
        tinylm.cli.command_line(command).parse_args(argv)
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.count("\n") == 1, err
    abbreviation = next(arg for arg in argv if arg.startswith("--") and arg not in ("--ckpt", "--text", "--out"))
    assert f"error: unrecognized arguments: {abbreviation}" in err


def test_a_mixture_of_experts_train_line_shows_its_worst_layers_max_violation():
    record = {"event": "train", "step": 10, "loss": 2.0, "lr": 1e-3, "tokens_per_s": 1000.0, "elapsed": 1.0,
              "skipped_steps": 0, "expert_load": [[0.5, 0.5], [0.9, 0.1]], "max_violation": [0.0, 0.8]}
    assert format_record(record).endswith("| expert max-violation 0.80")
    dense = {k: v for k, v in record.items() if k not in ("expert_load", "max_violation")}
    assert "max-violation" not in format_record(dense)


COMMAND_LINES = ["train", "sample", "eval", "prepare", "bench", "interop", "sft", "dpo", "chat", "serve", "grpo"]

SHARED = ["console", "errors", "flags", "options", "post_training"]  # shared: --help, errors, options


def test_every_command_line_lives_in_tinylm_cli():
    own = [name for name in COMMAND_LINES if name not in tinylm.cli.POST_TRAINING]  # the three share post_training
    assert sorted(m.name for m in pkgutil.iter_modules(tinylm.cli.__path__)) == sorted(own + SHARED)
    assert sorted(tinylm.cli.COMMANDS) == sorted(COMMAND_LINES)


@pytest.mark.parametrize("name", ["train", "interop"])
def test_python_dash_m_tinylm_runs_a_command_by_name(name):
    result = run_module("tinylm", [name, "--help"], timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith(f"usage: python -m tinylm.{name} ")


def test_python_dash_m_tinylm_lists_the_commands_and_refuses_an_unknown_one():
    listing = run_module("tinylm", [], timeout=120)
    assert listing.returncode == 0 and all(f"  {name} " in listing.stdout for name in COMMAND_LINES)
    unknown = run_module("tinylm", ["trian"], timeout=120)
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr.startswith("error: unknown command 'trian'") and unknown.stderr.count("\n") == 1


@pytest.mark.parametrize("name", COMMAND_LINES)
def test_python_dash_m_tinylm_name_runs_the_cli_module(name):
    """`python -m tinylm.<name>` stays the way to run a command although its code moved to tinylm/cli/."""
    result = run_module(f"tinylm.{name}", ["--help"], timeout=120)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith(f"usage: python -m tinylm.{name} ")


@pytest.mark.parametrize("name", COMMAND_LINES)
def test_a_usage_error_of_every_command_is_one_line_with_exit_status_2(name, capsys):
    """argparse would print its whole usage block before the error; the course's form is one line (README)."""
    module = tinylm.cli.command_line(name)
    with pytest.raises(SystemExit) as exited:
        module.parse_args(["--no-such-option"])
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith(f"python -m tinylm.{name}") and " error: " in captured.err
    assert captured.err.endswith(" --help\n")


class Built(Exception):
    """Raised instead of parsing, to hand the test the parser a command line built."""


def parsers_of(name: str) -> list[argparse.ArgumentParser]:
    """The parser of `python -m tinylm.<name>` and those of its subcommands."""

    def capture(parser, args=None, namespace=None):
        raise Built(parser)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_known_args", capture)  # what every parse_args calls
        with pytest.raises(Built) as built:
            tinylm.cli.command_line(name).parse_args([])
    parser = built.value.args[0]
    return [parser, *(parser.subcommands.choices.values() if parser.subcommands else ())]


@pytest.mark.parametrize("name", COMMAND_LINES)
def test_help_shows_every_default_and_examples_that_parse(name):
    parse_args = tinylm.cli.command_line(name).parse_args
    for parser in parsers_of(name):
        one_of = {id(a) for group in parser._mutually_exclusive_groups if group.required for a in group._group_actions}
        formatter = parser._get_formatter()
        for action in parser._actions:
            takes_a_value = action.option_strings and action.nargs != 0 and action.help != argparse.SUPPRESS
            if takes_a_value and not action.required and id(action) not in one_of:
                shown = formatter._expand_help(action) if action.help else ""  # argparse shows no help without one
                assert "default" in shown, (parser.prog, action.option_strings)
        help_text = parser.format_help()
        examples = [line.strip() for line in help_text.split("\nexamples:\n")[1].splitlines() if line.strip()]
        assert examples and all(line.startswith(f"python -m tinylm.{name} ") for line in examples), help_text
        for line in examples:
            parse_args(shlex.split(line, comments=True)[3:])  # exits with a usage error if an example is wrong


def examples_of(help_text: str) -> list[str]:
    return [line.strip() for line in help_text.partition("\nexamples:\n")[2].splitlines() if line.strip()]


@pytest.mark.parametrize("name", COMMAND_LINES)
def test_every_command_and_mode_shows_three_to_five_examples(name):
    """eval loss, eval hellaswag and five bench modes showed one or two (tests/test_prose.py checks that each --help
    fits one screen; test_help_shows_every_default_and_examples_that_parse that each example parses)."""
    counts = {parser.prog: len(examples_of(parser.format_help())) for parser in parsers_of(name)}
    assert all(3 <= count <= 5 for count in counts.values()), counts


def test_the_command_list_shows_three_to_five_examples_that_run(capsys):
    """`python -m tinylm --help` showed none: each example is `python -m tinylm <command> ...`, which its command's
    own parser takes (--help exits with status 0)."""
    from tinylm.cli import USAGE

    examples = examples_of(USAGE)
    assert 3 <= len(examples) <= 5, USAGE
    for line in examples:
        words = shlex.split(line)
        assert words[:3] == ["python", "-m", "tinylm"] and words[3] in tinylm.cli.COMMANDS, line
        try:
            tinylm.cli.command_line(words[3]).parse_args(words[4:])
        except SystemExit as exit_:
            assert exit_.code == 0, line
    capsys.readouterr()


def test_train_help_says_the_speedrun_recipe_wins_only_at_equal_time(capsys):
    """It runs to the same step limit as the default, which takes it longer: its win is loss per training second."""
    with pytest.raises(SystemExit):
        importlib.import_module("tinylm.cli.train").parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "speedrun (Muon; cpu and smoke profiles): wins at equal time, runs longer to its step limit" in shown


def test_train_line_shows_the_step_of_the_total_and_the_eta():
    record = {"event": "train", "step": 200, "max_steps": 6000, "loss": 2.0, "lr": 1e-3, "tokens_per_s": 5000.0,
              "elapsed": 95.0, "eta": 65.0, "skipped_steps": 0}
    line = format_record(record)
    assert line.startswith("step  200/6000 | loss 2.0000")
    assert line.endswith("| 1m35s | ETA 1m05s")


def test_plan_line_says_the_expected_training_time_or_that_the_budget_ends_it():
    by_steps = {"event": "plan", "step": 10, "max_steps": 6000, "max_seconds": None, "step_seconds": 0.52,
                "expected_steps": 6000, "expected_seconds": 3120.0}
    assert format_record(by_steps).startswith("expected: about 52m00s of training for 6,000 steps "
                                              "(0.52 s/step measured)")
    by_time = {**by_steps, "max_seconds": 300.0, "expected_steps": 577.0, "expected_seconds": 300.0}
    line = format_record(by_time)
    assert "max_seconds budget ends training after 5m00s, near step 577 of 6,000" in line
    assert "evaluations" in line


@pytest.mark.parametrize("command, argv, option, least", [
    ("sample", ["--num-samples", "-2"], "--num-samples", 1),
    ("sample", ["--num-samples", "0"], "--num-samples", 1),
    ("sample", ["--max-new-tokens", "0"], "--max-new-tokens", 1),
    ("sample", ["--min-new-tokens", "-1"], "--min-new-tokens", 0),
    ("sample", ["--top-k", "0"], "--top-k", 1),
    ("eval", ["loss", "--text", "t.txt", "--batch-size", "0"], "--batch-size", 1),
    ("eval", ["hellaswag", "--limit", "-5"], "--limit", 1),
    ("bench", ["train", "--steps", "0"], "--steps", 1),
    ("bench", ["train", "--batch-size", "-1"], "--batch-size", 1),
    ("bench", ["train", "--reference", "--rounds", "0"], "--rounds", 1),
    ("bench", ["train", "--n-layer", "0"], "--n-layer", 1),
    ("bench", ["decode", "--new-tokens", "0"], "--new-tokens", 1),
    ("bench", ["decode", "--prompt-tokens", "1", "-3"], "--prompt-tokens", 1),
    ("bench", ["bpe", "--merges", "0"], "--merges", 1),
    ("bench", ["bpe", "--repeats", "zero"], "--repeats", 1),
])
def test_an_integer_option_below_its_least_sensible_value_is_a_usage_error(command, argv, option, least, capsys):
    """0 samples, 0 new tokens, 0 steps, ...: the command would do nothing, or fail later with a traceback."""
    module = tinylm.cli.command_line(command)
    ckpt = ["--ckpt", "runs/x"] if command in ("sample", "eval") else []
    argv = argv[:1] + ckpt + argv[1:] if command == "eval" else ckpt + argv
    with pytest.raises(SystemExit) as exit_info:
        module.parse_args(argv)
    assert exit_info.value.code == 2
    value = argv[-1]
    assert f"error: argument {option}: must be an integer >= {least}, got {value}" in capsys.readouterr().err


def test_sample_with_a_negative_number_of_samples_exits_with_a_usage_error_not_silently():
    result = run_module("tinylm.sample", ["--ckpt", "runs/x", "--num-samples", "-2"], timeout=120)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("python -m tinylm.sample: error: argument --num-samples: must be an integer >= 1, got -2; "
                             "see python -m tinylm.sample --help\n")


ARGV = {"prepare": ["shakespeare-char"], "train": ["shakespeare-char", "--profile", "smoke"],
        "sample": ["--ckpt", "runs/none"], "eval": ["loss", "--ckpt", "runs/none", "--text", "none.txt"],
        "bench": ["decode", "--preset", "stories15m"], "interop": ["export", "--ckpt", "none.pt", "--out", "none"],
        "sft": ["--profile", "smoke"], "dpo": ["--profile", "smoke"], "grpo": ["--profile", "smoke"],
        "chat": ["--ckpt", "runs/none"], "serve": ["--ckpt", "runs/none"]}


NO_DEVICE = ("prepare", "interop")  # they take no --device: they compute on the CPU only


class Began(Exception):
    pass


@pytest.mark.parametrize("command", sorted(tinylm.cli.COMMANDS))
def test_every_command_configures_the_backend_first_through_begin(command, monkeypatch):
    """Issue 30: bench, sample, eval, chat and serve never chose their threads. Every command's main now goes through
    `tinylm.cli.console.begin` (configure_backend for its --device) before any work: the stand-in below stops it
    there, so nothing is loaded or trained."""
    import tinylm.cli.console as console

    seen = []

    def configure(device=None):
        seen.append(device)
        raise Began

    monkeypatch.setattr(console, "configure_backend", configure)
    module = tinylm.cli.command_line(command)
    with pytest.raises(Began):
        module.main(ARGV[command] if command in NO_DEVICE else [*ARGV[command], "--device", "cpu"])
    assert seen == ["cpu"], "the device the command computes on, even without a --device option"


BENCH_MODE_OPTIONS = {  # what each `python -m tinylm.bench MODE` takes, --help aside
    "train": {"--preset", "--arch", "--batch-size", "--steps", "--reference", "--rounds", "--device", "--dtype"},
    "compile": {"--preset", "--arch", "--batch-size", "--rounds", "--device", "--dtype"},
    "decode": {"--preset", "--arch", "--ckpt", "--new-tokens", "--prompt-tokens", "--device", "--dtype"},
    "cache": {"--preset", "--arch", "--device", "--dtype"},
    "bpe": {"--merges", "--repeats"},
    "speedrun": {"--track", "--profile", "--target", "--seeds", "--seconds", "--eval-interval", "--device"},
}
SHAPE = {"--n-layer", "--n-head", "--n-kv-head", "--n-embd", "--mlp-hidden", "--block-size", "--vocab-size"}


@pytest.mark.parametrize("mode", sorted(BENCH_MODE_OPTIONS))
def test_each_bench_mode_takes_its_own_options_and_names_its_own_help_for_another_modes(mode, capsys):
    from tinylm.cli import bench

    with pytest.raises(SystemExit):
        bench.parse_args([mode, "--help"])
    options = capsys.readouterr().out.split("\noptions:\n")[1].split("\nexamples:\n")[0]  # every option group
    listed = {match.group(1) for match in re.finditer(r"^  (?:-\w, )?(--[\w-]+)", options, re.MULTILINE)}
    shape_group = options.partition("\nshape options:\n")[2]  # named in a list, to keep the --help on one screen
    listed |= set(re.findall(r"--[\w-]+", shape_group))
    expected = BENCH_MODE_OPTIONS[mode] | (SHAPE if "--preset" in BENCH_MODE_OPTIONS[mode] else set()) | {"--help"}
    assert listed == expected
    foreign = "--merges" if mode != "bpe" else "--steps"
    with pytest.raises(SystemExit) as exit_info:
        bench.parse_args([mode, foreign, "3"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (f"python -m tinylm.bench {mode}: error: unrecognized arguments: {foreign} 3; "
                                       f"see python -m tinylm.bench {mode} --help\n")


@pytest.mark.parametrize("module, argv, expected", [
    ("bench", ["--steps", "5", "train"], "python -m tinylm.bench train: error: --steps goes after the mode: "
     "python -m tinylm.bench train --steps ...; see python -m tinylm.bench train --help"),
    ("bench", ["--steps=5"], "python -m tinylm.bench: error: --steps=5 goes after the mode: "
     "python -m tinylm.bench MODE --steps=5 ...; see python -m tinylm.bench --help"),
    ("eval", ["--json", "loss", "--ckpt", "run"], "python -m tinylm.eval loss: error: --json goes after the command: "
     "python -m tinylm.eval loss --json ...; see python -m tinylm.eval loss --help"),
])
def test_a_subcommands_option_before_the_subcommand_says_where_it_goes(module, argv, expected, capsys):
    parse_args = tinylm.cli.command_line(module).parse_args
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == expected + "\n"
    # after the subcommand the same option parses, and the top command's own --help still works before it
    assert parse_args(["train", "--steps", "5"] if module == "bench" else ["loss", "--ckpt", "run", "--text", "t",
                                                                          "--json"]) is not None
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0


def test_the_note_before_output_survives_print_writing_through_it():
    """print() holds no reference to sys.stdout while it writes; a wrapper that replaced itself there freed itself
    mid-write and crashed the interpreter (exit status 139, seen as a flaky CI crash)."""
    script = ("import sys\nfrom tinylm.cli.console import _NoteBeforeOutput, end\n"
              "for i in range(200):\n    sys.stdout = _NoteBeforeOutput(sys.__stdout__, 'note: n')\n"
              "    print('x', i)\n    end()\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"x {i}" for i in range(200)] and done.stderr.count("note: n") == 200
