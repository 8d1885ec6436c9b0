"""`--overwrite` of a finished run, killed with SIGKILL at three points, for every command that trains: after each
kill, readers of the run folder (`eval` and `sample` here; chat, serve and interop find the checkpoint the same way)
read the whole old run, in place, or the new run's first checkpoint, never nothing, and the next start settles the
folder.

The kill is deterministic: the command's process, given a prelude by tests/preloaded.py, sends SIGKILL to itself
at the first rename onto a path (before or after it), so that nothing in tinylm knows about the test."""

from __future__ import annotations

import hashlib
import json
import os
import signal

import pytest

from tests.chat_fixtures import TEXT as CHAT_TEXT
from tests.chat_fixtures import save_tiny_chat_checkpoint
from tests.helpers import REPO
from tests.preloaded import run_module
from tinylm.train.run_folder import OWNER_FILE, STAGED, SWAPPING

# The commands that train, as `python -m tinylm <command>` names them, each with the arguments of a smoke run (its
# --out is added) and a text its tokenizer encodes, for `eval loss`. "{chat}" is a chat model's run folder.
COMMANDS = [
    ("train", ["shakespeare-char", "--profile", "smoke"], "ROMEO: O, she doth teach the torches to burn bright!\n"),
    ("sft", ["--task", "instruct", "--profile", "smoke"], "What is the capital of France?\n"),
    ("dpo", ["--task", "preference", "--profile", "smoke", "--base", "{chat}", "--batch-size", "8", "--max-steps", "4"],
     CHAT_TEXT),
    ("grpo", ["--profile", "smoke"], "12+34=46\n7-2=5\n"),
]

# Where the overwriting run is killed: the first rename onto this path of the run folder, and whether after it.
KILL_POINTS = {
    "new run begun beside the old, no step yet": (f"{STAGED}/settings.json", True),
    "new best.pt, before the new last.pt": (f"{STAGED}/last.pt", False),
    "just after the swap to the new run commits": (SWAPPING, True),
}

KILL = """
import os, pathlib, signal

target, after = pathlib.Path({target!r}), {after!r}


def watched(rename):
    def renaming(source, destination, *args, **kwargs):
        if pathlib.Path(destination) == target and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = rename(source, destination, *args, **kwargs)
        if pathlib.Path(destination) == target:
            os.kill(os.getpid(), signal.SIGKILL)
        return result
    return renaming


os.replace, os.rename = watched(os.replace), watched(os.rename)
pathlib.Path.replace, pathlib.Path.rename = watched(pathlib.Path.replace), watched(pathlib.Path.rename)
"""


def command(name, *args, root, prelude=""):
    env = {**os.environ, "TINYLM_DATA_DIR": str(root / "data"), "TINYLM_RUNS_DIR": str(root / "runs"),
           "OMP_NUM_THREADS": "1"}
    return run_module("tinylm", [name, *map(str, args)], cwd=REPO, env=env, timeout=300, prelude=prelude)


def old_files(out):
    """Every file of the run by its bytes (the lock and its owner note aside)."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in out.iterdir()
            if path.is_file() and path.name not in ("run.lock", OWNER_FILE)}


def inodes(out):
    """The run's checkpoints by identity: a file moved aside and back keeps its inode, a new save has another."""
    return {name: (out / name).stat().st_ino for name in ("best.pt", "last.pt") if (out / name).is_file()}


@pytest.mark.parametrize("name, args, text", COMMANDS, ids=[name for name, _, _ in COMMANDS])
def test_a_killed_overwrite_leaves_readers_the_old_run_or_the_new_ones_first_checkpoint(tmp_path, name, args, text):
    root, out = tmp_path, tmp_path / "run"
    save_tiny_chat_checkpoint(root / "chat" / "best.pt", block_size=256)
    args = [arg.format(chat=root / "chat") for arg in args] + ["--out", out]
    (root / "text.txt").write_text(text)

    def read():
        """What `eval loss` reads from the run folder: the checkpoint it found, and its loss on the text."""
        result = command("eval", "loss", "--ckpt", out, "--text", root / "text.txt", "--json", root=root)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    def sample():
        result = command("sample", "--ckpt", out, "--max-new-tokens", "12", "--seed", "3", root=root)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = command(name, *args, root=root)
    assert first.returncode == 0, first.stderr
    old, old_bytes, old_read, old_sample = inodes(out), old_files(out), read(), sample()
    assert old_read["ckpt"] == str(out / "best.pt") and set(old) == {"best.pt", "last.pt"}
    for point, (target, after) in KILL_POINTS.items():
        killed = command(name, *args, "--overwrite", root=root,
                         prelude=KILL.format(target=str(out / target), after=after))
        assert killed.returncode == -signal.SIGKILL, f"{point}: {killed.stderr}"
        swapped = point.startswith("just after the swap")
        if swapped:
            assert read()["ckpt"] == str(out / SWAPPING / "best.pt")  # the new run's, on its way into place
        else:  # the folder itself still holds the old run, untouched: a person's ls or torch.load finds it
            assert inodes(out) == old and old_files(out) == old_bytes, point  # settings, metrics, reports too
            assert read() == old_read and sample() == old_sample, point
            assert (out / STAGED / "best.pt").is_file() == point.startswith("new best.pt"), point
        settled = command(name, *args, root=root)  # the next start settles the folder, then refuses the run in it
        assert settled.returncode == 1 and "already holds a run" in settled.stderr, f"{point}: {settled.stderr}"
        assert not {STAGED, SWAPPING} & {path.name for path in out.iterdir()}, point
        if swapped:
            new = inodes(out)
            assert new.keys() == old.keys() and not set(new.values()) & set(old.values()), point
            assert read()["ckpt"] == str(out / "best.pt"), point
        else:
            assert "the previous run is as it was" in settled.stdout, point
            assert inodes(out) == old and read() == old_read, point
