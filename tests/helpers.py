"""Helpers several test modules share: the repository's root, running a command line as a user runs it (in a process
forked from one that has imported torch: tests/preloaded.py), the logits of a transformers model and of a tinylm one,
and torch.optim.Muon's iteration in another dtype."""

from __future__ import annotations

import contextlib
import inspect
import os
import shutil
import subprocess
from pathlib import Path

import torch

from tests.preloaded import run_module

REPO = Path(__file__).resolve().parent.parent


def run_cli(module, *args, data_dir):
    """`python -m module args` from the repository's root in a new process (tests/preloaded.py), its data in
    data_dir, on one thread."""
    env = {**os.environ, "TINYLM_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    assert env.get("TINYLM_DATA_MIRROR"), "the root conftest.py should point TINYLM_DATA_MIRROR at the offline mirror"
    return run_module(module, [str(arg) for arg in args], cwd=REPO, env=env, timeout=300)


def hf_logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def tinylm_logits(model, ids):
    with torch.no_grad():
        return model(ids)[0]


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str):
    """A real file system of `size` (a tmpfs, e.g. "64k") mounted at `folder` and unmounted afterwards, to fill up
    for real; the calling test is skipped where this process may not mount one (it needs root or CAP_SYS_ADMIN)."""
    import pytest

    folder.mkdir()
    if os.name != "posix" or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs a POSIX system with mount(8)")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def torch_muon_computing_in(dtype: torch.dtype, monkeypatch) -> None:
    """Make torch.optim.Muon run its own Newton–Schulz code in `dtype` instead of bfloat16: its source with the one cast
    replaced, so that tinylm's Muon with ns_dtype=dtype can be held to torch's arithmetic, operation for operation."""
    import torch.optim._muon as torch_muon

    source = inspect.getsource(torch_muon._zeropower_via_newtonschulz)
    assert source.count("grad.bfloat16()") == 1, "torch.optim.Muon's iteration changed: update this helper"
    namespace = dict(vars(torch_muon))
    # a copy, as .bfloat16() of a float32 tensor is: torch divides it in place, and without Nesterov it is the buffer
    exec(source.replace("grad.bfloat16()", f"grad.to(torch.{str(dtype).removeprefix('torch.')}, copy=True)"),
         namespace)
    monkeypatch.setattr(torch_muon, "_zeropower_via_newtonschulz", namespace["_zeropower_via_newtonschulz"])


GPT2_VOCAB = 50257


def tiny_bpe_gpt(seed: int = 0, block_size: int = 64):
    """A 1-layer, 16-wide GPT over GPT-2's 50,257 tokens, in eval mode: its weights depend only on `seed`."""
    from tinylm.config import GPTConfig
    from tinylm.model.gpt import GPT

    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=GPT2_VOCAB, block_size=block_size, n_layer=1, n_head=2, n_embd=16)).eval()


def logits_favouring(bpe, preferences: dict[str, float]) -> torch.Tensor:
    """Next-token logits, the same at every position: `preferences` maps a one-token text to its logit, others get 0."""
    logits = torch.zeros(GPT2_VOCAB)
    for text, value in preferences.items():
        (token,) = bpe.encode(text)
        logits[token] = value
    return logits
