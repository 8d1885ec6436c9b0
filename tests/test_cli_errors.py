"""Every command line's anticipated failures: one line on stderr that says what to do, exit status 1, nothing lost.

Each case runs `python -m tinylm.<command>` in a new process (tests/preloaded.py), offline, as a user runs it, and
writes only under pytest's temporary folders. "Offline" is made sure of whatever this machine's network: no mirror,
Hugging Face in offline mode, and HTTPS through a proxy on a closed local port.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO
from tests.preloaded import run_module
from tinylm.cli.errors import run_cli
from tinylm.errors import InputError
from tinylm.train.checkpoint import load_checkpoint, save_checkpoint

OFFLINE = {"TINYLM_DATA_MIRROR": None, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
# Run before the module: every fsync fails as on a full disk, so an atomic write really runs (a temporary file is
# created and written) and fails where a full disk makes it fail: a resumed run's first, its settings.json.
DISK_FULL = """
import errno, os
def disk_full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
os.fsync = disk_full
"""
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="the case is a machine without a CUDA GPU")
KEPT_FILES = ("best.pt", "last.pt", "settings.json")


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_root):
    """A smoke run, hand-edited copies of its checkpoint, a mirror with a corrupted file, a text, a plain file."""
    root = tmp_path_factory.mktemp("cli-errors")
    run = root / "run"
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_root), "OMP_NUM_THREADS": "1"}
    result = run_module("tinylm.train", ["shakespeare-char", "--profile", "smoke", "--out", run], cwd=REPO, env=env,
                        timeout=300)
    assert result.returncode == 0, result.stderr
    state = {k: v for k, v in load_checkpoint(run / "best.pt").items() if k not in ("format", "version")}
    save_checkpoint(root / "wrong-shapes.pt", {**state, "model": {**state["model"],
                                                                  "transformer.wte.weight": torch.zeros(3, 3)}})
    save_checkpoint(root / "no-config.pt", {k: v for k, v in state.items() if k != "model_config"})
    save_checkpoint(root / "absurd-vocab.pt",
                    {**state, "model_config": {**state["model_config"], "vocab_size": 10**12}})
    model_only = {k: state[k] for k in ("model_config", "model", "tokenizer")}  # e.g. written by interop import
    save_checkpoint(root / "imported" / "last.pt", model_only)
    mirror = root / "bad-mirror"
    shutil.copytree(Path(os.environ["TINYLM_DATA_MIRROR"]) / "tinyshakespeare", mirror / "tinyshakespeare")
    with open(mirror / "tinyshakespeare" / "input.txt", "a", encoding="utf-8") as f:
        f.write("a line the real file lacks\n")
    (root / "text.txt").write_text("ROMEO:\nWhat light through yonder window breaks?\n", encoding="utf-8")
    (root / "plain-file").write_text("not a folder\n")
    return {"root": root, "run": run, "data": data_root}


def no_run_folder(places, out):
    """A run that failed before its first step leaves no trace: no run folder, empty or not."""
    assert not out.exists()


def unchanged_checkpoints(places, out):
    """The run that failed to save still holds the checkpoints and settings it had, byte for byte, and no temporary
    file (the empty run.lock that the kernel's lock uses stays: tinylm.train.run_folder says why)."""
    assert sorted(p.name for p in out.iterdir()) == ["best.pt", "last.pt", "metrics.jsonl", "run.lock",
                                                     "settings.json"]
    for name in KEPT_FILES:
        assert (out / name).read_bytes() == (places["run"] / name).read_bytes()


CASES = [
    # (module, arguments, environment changes, what stderr's one line says, a check of what is left). {tmp} is the
    # case's own folder, {root} and {run} the shared files; DISK_FULL is no variable: it runs the case under DISK_FULL.
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run"], {**OFFLINE, "TINYLM_DATA_DIR": "{tmp}/d"},
                 r"could not download https://\S+/input.txt \(.*\)\. If this machine is offline, "
                 r"set TINYLM_DATA_MIRROR",
                 no_run_folder, id="train-offline-without-mirror"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run", "--resume"], {},
                 r"--resume: \S+/run has no last.pt to continue from; drop --resume", no_run_folder,
                 id="train-resume-without-a-run"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run"],
                 {"TINYLM_DATA_MIRROR": "{root}/bad-mirror", "TINYLM_DATA_DIR": "{tmp}/d"},
                 r"input.txt arrived with sha256 [0-9a-f]{64}, expected 86c4e6aa.*: the mirror's \S+/bad-mirror/"
                 r"tinyshakespeare/input.txt is damaged or another version; replace it", None,
                 id="train-mirror-file-fails-sha256"),
    pytest.param("tinylm.train", ["tinystories", "--profile", "gpu", "--out", "{tmp}/run"],
                 {**OFFLINE, "TINYLM_DATA_DIR": "{tmp}/d"},
                 r"could not load roneneldan/TinyStories from Hugging Face .* set TINYLM_DATA_MIRROR", None,
                 id="train-tinystories-gpu-offline-without-mirror"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run", "--device", "foo"], {},
                 r"unknown device 'foo'; use cpu, cuda, cuda:N or mps", None, id="train-device-foo"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run", "--device", "cuda"], {},
                 r"device 'cuda': (this PyTorch is a CPU-only build|PyTorch sees no CUDA GPU here); use cpu", None,
                 id="train-device-cuda-without-gpu", marks=NO_CUDA),
    pytest.param("tinylm.sample", ["--ckpt", "{run}", "--device", "cuda:0"], {},
                 r"device 'cuda:0': .*; use cpu", None, id="sample-device-cuda-without-gpu", marks=NO_CUDA),
    pytest.param("tinylm.eval", ["loss", "--ckpt", "{run}", "--text", "{root}/text.txt", "--device", "foo"], {},
                 r"unknown device 'foo'", None, id="eval-device-foo"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{root}/plain-file"], {},
                 r"--out \S+/plain-file: \S+/plain-file is a file, not a folder; choose another --out", None,
                 id="train-out-is-a-file"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{root}/plain-file/run"], {},
                 r"--out \S+/plain-file/run: \S+/plain-file is a file, not a folder; choose another --out", None,
                 id="train-out-under-a-file"),
    pytest.param("tinylm.prepare", ["shakespeare-char", "--out", "{root}/plain-file/data"], {},
                 r"--out \S+/plain-file/data: \S+/plain-file is a file, not a folder; choose another --out", None,
                 id="prepare-out-under-a-file"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run", "--resume", "--max-steps", "35"],
                 {"DISK_FULL": "1"}, r"No space left on device: \S+/run/settings.json; the disk is full: free some",
                 unchanged_checkpoints, id="train-disk-full-while-saving"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{tmp}/run", "--learning-rate", "1e6"], {},
                 r"training diverged at step \d+: the loss became NaN or infinite \(peak learning rate 1e\+06\); "
                 r"no checkpoint was saved yet, so start again at a lower peak rate: --learning-rate 5e\+05$", None,
                 id="train-diverges"),
    pytest.param("tinylm.train", ["shakespeare-char", "--out", "{root}/imported", "--resume"], {},
                 r"holds a model but not a training run's state .*cannot be resumed", None,
                 id="train-resume-a-model-only-checkpoint"),
    pytest.param("tinylm.sample", ["--ckpt", "{root}/wrong-shapes.pt"], {},
                 r"wrong-shapes.pt: its weights do not fit its model_config: transformer.wte.weight has shape "
                 r"\(3, 3\), the config gives \(65, 32\).*use another checkpoint", None,
                 id="sample-checkpoint-wrong-shapes"),
    pytest.param("tinylm.eval", ["loss", "--ckpt", "{root}/no-config.pt", "--text", "{root}/text.txt"], {},
                 r"no-config.pt has no model_config, so it holds no model", None, id="eval-checkpoint-without-config"),
    pytest.param("tinylm.bench", ["decode", "--ckpt", "{root}/absurd-vocab.pt"], {},
                 r"absurd-vocab.pt: its weights do not fit .* the config gives \(1000000000000, 32\)", None,
                 id="bench-checkpoint-absurd-vocabulary"),
    pytest.param("tinylm.interop", ["export", "--ckpt", "{root}/absurd-vocab.pt", "--out", "{tmp}/hf"], {},
                 r"absurd-vocab.pt: its weights do not fit", None, id="interop-checkpoint-absurd-vocabulary"),
    pytest.param("tinylm.bench", ["decode", "--prompt-tokens", "1", "64", "--new-tokens", "2"], {},
                 r"--prompt-tokens 64: a prompt must be shorter than the model's context of 64 tokens", None,
                 id="bench-decode-prompt-as-long-as-the-context"),
]


@pytest.mark.parametrize("module, args, env_changes, message, check", CASES)
def test_cli_failure_is_one_line_that_says_what_to_do(files, tmp_path, module, args, env_changes, message, check):
    places = {**files, "tmp": tmp_path}
    args = [arg.format(**places) for arg in args]
    env = {**os.environ, "TINYLM_DATA_DIR": str(files["data"]), "OMP_NUM_THREADS": "1"}
    for name, value in env_changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value.format(**places)
    prelude = ""
    if env.pop("DISK_FULL", None):
        shutil.copytree(files["run"], tmp_path / "run")
        prelude = DISK_FULL
    result = run_module(module, args, cwd=REPO, env=env, timeout=300, prelude=prelude)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and re.search(message, lines[0]), lines[0]
    if check is not None:
        check(places, tmp_path / "run")


def test_sample_streams_a_huge_max_new_tokens_instead_of_allocating_it(files):
    """10**12 new tokens were 8 TB of token ids allocated before the first one; now they stream until stopped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with subprocess.Popen([sys.executable, "-m", "tinylm.sample", "--ckpt", str(files["run"]), "--prompt", "ROMEO:",
                           "--max-new-tokens", str(10**12), "--temperature", "0.8", "--seed", "1"],
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            streamed = process.stdout.read(len("ROMEO:") + 200)  # the prompt, then 200 generated characters
        finally:
            process.kill()
        errors = process.stderr.read()
    assert streamed.startswith("ROMEO:") and len(streamed) == len("ROMEO:") + 200 and not errors, errors


def test_an_unanticipated_error_keeps_its_traceback():
    def buggy(argv):
        raise RuntimeError("a bug")

    def bad_input(argv):
        raise InputError(f"--flag {argv[0]} is out of range; use 1 to 3")

    def foreign_value_error(argv):  # a ValueError tinylm did not raise on purpose is a bug too
        return int("seven")

    with pytest.raises(RuntimeError, match="a bug"):
        run_cli(buggy)
    with pytest.raises(ValueError, match="invalid literal"):
        run_cli(foreign_value_error)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(bad_input, ["7"])
    assert exit_info.value.code == "error: --flag 7 is out of range; use 1 to 3"


def test_ctrl_c_while_a_command_is_still_starting_ends_in_one_line():
    """Loading torch takes a second or more; a Ctrl-C then used to end in a KeyboardInterrupt traceback.

    The child gets SIGINT's default disposition whatever this process inherited (a shell without job control
    starts background jobs with it ignored, and Python then installs no KeyboardInterrupt handler), and the signal
    is sent once the child reports (`-X importtime`) that it is importing torch, not after a guessed delay."""
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "tinylm.train", "--help"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    for line in process.stderr:  # one line per module imported, as it is imported
        lines.append(line)
        if "torch" in line:
            break
    process.send_signal(signal.SIGINT)
    out, rest = process.communicate(timeout=120)
    said = [line for line in (lines + rest.splitlines(keepends=True)) if not line.startswith("import time:")]
    assert process.returncode == 130 and out == "", "".join(said)
    assert [line.rstrip("\n") for line in said] == ["interrupted while train was starting: nothing was done"]


@pytest.mark.parametrize("command, status", [
    (["tinylm", "--help"], 141),  # the dispatcher's own listing
    (["tinylm.train", "--help"], 0),  # argparse's help: argparse itself lets a failed write of it pass
    (["tinylm.sample", "--ckpt", "{run}", "--max-new-tokens", "200", "--seed", "1"], 141),  # streamed as it comes
    (["tinylm", "sample", "--ckpt", "{run}", "--max-new-tokens", "200", "--seed", "1"], 141),
], ids=["tinylm --help", "train --help", "sample", "tinylm sample"])
def test_a_reader_that_closed_the_pipe_ends_every_command_quietly_as_unix_tools_end(files, command, status):
    """`python -m tinylm --help | head -1` ended in a BrokenPipeError traceback and `sample ... | head` in `error:
    Broken pipe`. Here the reader end of a real pipe is closed before the command writes: no line on stderr, and the
    status the shell reports for `yes | head -1` (141, 128 + SIGPIPE)."""
    reader, writer = os.pipe()
    os.close(reader)
    try:
        result = subprocess.run([sys.executable, "-m", *[arg.format(**files) for arg in command]], cwd=REPO,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=writer, stderr=subprocess.PIPE,
                                text=True, timeout=300)
    finally:
        os.close(writer)
    assert (result.returncode, result.stderr) == (status, "")


def run_on_a_busy_machine(module, args, env):
    """`python -m module args` as a machine with 2 cores, one of them busy elsewhere, runs it. In a new interpreter:
    a process forked from one whose OpenMP threads have started cannot use two threads (tests/preloaded.py)."""
    busy = ("import runpy, sys, torch, tinylm.runtime\ntorch.set_num_threads(2)\n"
            "tinylm.runtime.spare_cores = lambda *args: 1\nsys.argv = sys.argv[1:]\n"
            "runpy.run_module(sys.argv[0], alter_sys=True, run_name='__main__')")
    env = {key: value for key, value in env.items() if key != "OMP_NUM_THREADS"}  # it would silence the note
    return subprocess.run([sys.executable, "-c", busy, module, *args], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("module, args, message", [
    ("tinylm.sample", ["--ckpt", "{tmp}/nothing"], r"no checkpoint at \S+/nothing"),
    ("tinylm.sample", ["--ckpt", "{run}", "--top-p", "2"], r"top_p must be in \(0, 1\]"),
    ("tinylm.train", ["shakespeare-char", "--out", "{root}/plain-file/run"], r"is a file, not a folder"),
    ("tinylm.train", ["shakespeare-char", "--out", "{tmp}/new", "--resume"], r"has no last.pt to continue from"),
    ("tinylm.train", ["shakespeare-char", "--arch", "llama", "--balancing", "aux_loss", "--out", "{tmp}/run"],
     r"balancing='aux_loss' applies to a mixture of experts"),
    ("tinylm.eval", ["loss", "--ckpt", "{run}", "--text", "{tmp}/missing.txt"], r"missing\.txt: no such file"),
], ids=["sample-no-checkpoint", "sample-top-p", "train-out-under-a-file", "train-resume-nothing",
        "train-balancing-without-experts", "eval-no-text"])
def test_on_a_busy_machine_an_error_in_the_arguments_is_the_only_line(files, tmp_path, module, args, message):
    """The note that fewer CPU threads were chosen came before even a one-line error about the arguments."""
    env = {**os.environ, "TINYLM_DATA_DIR": str(files["data"])}
    places = {**files, "tmp": tmp_path}
    result = run_on_a_busy_machine(module, [arg.format(**places) for arg in args], env)
    assert result.returncode == 1 and re.fullmatch(rf"error: .*{message}.*\n", result.stderr), result.stderr


def test_on_a_busy_machine_bench_and_training_note_the_threads_and_sample_does_not(files, tmp_path):
    """Every command printed "note: using 1 of 2 CPU threads: ..." on a busy machine. It is said where the threads
    change what the command prints, once, just before its first output (so that an error in its arguments stays the
    only line): bench's figures, and a training run's steps within its time budget, whose header shows the count
    ("device cpu (1 thread)" alone left a 2-core machine's user guessing why); sample's text does not depend on them."""
    env = {**os.environ, "TINYLM_DATA_DIR": str(files["data"])}
    trained = run_on_a_busy_machine("tinylm.train", ["shakespeare-char", "--profile", "smoke", "--max-steps", "6",
                                                     "--out", str(tmp_path / "run")], env)
    assert trained.returncode == 0 and "| device cpu (1 thread) |" in trained.stdout, trained.stderr
    assert re.fullmatch(r"note: using 1 of 2 CPU threads: other processes keep .*\n", trained.stderr), trained.stderr
    sampled = run_on_a_busy_machine("tinylm.sample", ["--ckpt", str(files["run"]), "--max-new-tokens", "5"], env)
    assert sampled.returncode == 0 and sampled.stdout and sampled.stderr == "", sampled.stderr
    measured = run_on_a_busy_machine("tinylm.bench", ["cache", "--preset", "gpt2-smoke"], env)
    assert measured.returncode == 0 and "KV cache" in measured.stdout, measured.stderr
    assert re.fullmatch(r"note: using 1 of 2 CPU threads: .*\n", measured.stderr), measured.stderr
    refused = run_on_a_busy_machine("tinylm.bench", ["decode", "--prompt-tokens", "4096"], env)
    assert refused.returncode == 1 and re.fullmatch(r"error: --prompt-tokens 4096: .*\n", refused.stderr)
