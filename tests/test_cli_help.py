"""Every --help of the commands that do not train (and of their subcommands) fits an 80-column terminal without a
wrapped line and one screen of 30 lines, as printed with COLUMNS=80."""

import pytest

from tests.test_prose import helps

COMMANDS = ["sample", "eval", "chat", "serve", "interop", "bench", "prepare"]
COLUMNS, LINES = 80, 30


@pytest.mark.parametrize("command", COMMANDS)
def test_each_help_fits_80_columns_and_30_lines(command, monkeypatch):
    texts = helps(command, monkeypatch)  # with COLUMNS=80, the command's and each subcommand's
    too_wide = {name: [line for line in text.splitlines() if len(line) > COLUMNS] for name, text in texts.items()}
    assert not any(too_wide.values()), too_wide
    too_long = {name: text.count("\n") for name, text in texts.items() if text.count("\n") > LINES}
    assert not too_long, too_long
