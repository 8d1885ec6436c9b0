"""What ties the notebooks together: how each one sets up, its Colab badge and install cell, and the runs one notebook
borrows from another.

`set_up_notebook` starts a notebook as every command starts (the profile, the device, the process-wide settings).
The badge and the install cell are written out in each notebook (they run before `tinylm` exists);
tests/test_notebooks_meta.py checks them against `colab_badge` and `INSTALL_CELL`. Notebook 7 samples from the
models notebooks 3 and 5 train, and notebook 6b scores notebook 6a's; where such a run is missing (a fresh Colab
machine), `find_or_train` trains a stand-in for a budget of steps, not seconds, says so, and keeps it for next time;
notebooks 10 and 11 start from notebook 9's chat models (`story_sft_run`), fine-tuned first where missing.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable, NamedTuple

import torch

from ..paths import runs_dir, shown
from ..posttrain.job import PostTrainingOptions
from ..posttrain.sft.run import sft
from ..runtime import configure_backend, resolve_device, resolve_profile
from ..train.checkpoint import load_model, published_model
from ..train.options import RunOptions
from ..train.prerequisite import Prerequisite
from ..train.progress import format_record
from ..train.recipes import default_run_name, resolve_recipe
from ..train.run import Pretraining
from ..train.run_folder import run_file
from .repository import BRANCH, REPOSITORY, TRACK_NOTEBOOKS, colab_url

# transformers (the `interop` extra: notebook 6b loads OpenAI's GPT-2 with it) and lm-evaluation-harness (the
# `harness` extra: notebook 6b runs it) come with the package on Colab too.
PIP_REQUIREMENT = f"tinylm[interop,harness] @ git+{REPOSITORY}@{BRANCH}"

# The first code cell of every notebook, exactly. On Colab it installs the package; elsewhere it does nothing.
INSTALL_CELL = f'''\
# Colab: install the course package. Locally (a clone with `pip install -r requirements.txt`) this does nothing.
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "{PIP_REQUIREMENT}"], check=True)'''


class NotebookSetup(NamedTuple):
    profile: str
    device: torch.device


def set_up_notebook(device: str | None = None, say: Callable[[str], None] = print) -> NotebookSetup:
    """(profile, device) of a notebook: $TINYLM_PROFILE or the hardware's, and `device` or the best available, with
    the process-wide settings made for that device (`tinylm.runtime.configure_backend`: one PyTorch thread per free
    CPU core, freed memory kept, TF32 on CUDA). Says so when it chose fewer threads than PyTorch would have. A
    notebook that computes on the CPU alone passes device="cpu"."""
    profile, device = resolve_profile(), resolve_device(device)
    if note := configure_backend(device):
        say(f"note: {note}")
    return NotebookSetup(profile, device)


def colab_badge(notebook: str) -> str:
    """The markdown line of `notebook`'s "Open in Colab" badge."""
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(notebook)})"


# The tracks whose notebook (repository.TRACK_NOTEBOOKS) trains a model into runs/notebook-<number>-<profile>
# (`notebook_run_folder`), where `find_or_train` looks first.
TRAINED_IN_A_NOTEBOOK = ("shakespeare-char", "tinystories", "gpt2-124m")
# Optimizer steps of a stand-in model: enough for the cpu recipes to learn words, short enough to wait for
# (notebooks/README.md, "How the notebooks work", says how long they take).
QUICK_STEPS = {"shakespeare-char": 2000, "tinystories": 250, "gpt2-124m": 100}


def notebook_number(notebook: str) -> str:
    """How the course names a notebook in prose: "06a_gpt2_124m_budget_and_ddp.ipynb" is notebook "6a"."""
    return notebook.split("_")[0].lstrip("0")


def notebook_run_folder(track: str, profile: str) -> Path:
    """Where the notebook of a track in TRAINED_IN_A_NOTEBOOK saves the model it trains."""
    return runs_dir() / f"notebook-{TRACK_NOTEBOOKS[track].split('_')[0]}-{profile}"


def run_candidates(track: str, profile: str) -> list[Path]:
    """Where a trained model of `track` may already be, in the order `find_or_train` looks; the last is where it
    trains a stand-in model, never a folder a full run writes."""
    candidates = [notebook_run_folder(track, profile)] if track in TRAINED_IN_A_NOTEBOOK else []
    candidates.append(runs_dir() / default_run_name(track, profile, "gpt2"))  # python -m tinylm.train TRACK
    candidates.append(runs_dir() / f"{track}-quick-{_quick_profile(profile)}")
    return candidates


def _quick_profile(profile: str) -> str:
    # The gpu recipes need the full datasets (TinyStories: a download of gigabytes), so a stand-in on a GPU
    # trains the cpu recipe too; it runs on the GPU all the same.
    return "smoke" if profile == "smoke" else "cpu"


def find_or_train(track: str, profile: str | None = None, *, max_steps: int | None = None, say=print) -> Path:
    """The run folder of a trained `track` model for `profile`: an existing run's, else a stand-in trained now.

    The stand-in is the `cpu` recipe (`smoke` for the smoke profile) trained for `max_steps` optimizer steps
    (default: QUICK_STEPS; the smoke recipe runs its own few) into the last of `run_candidates`, a prerequisite run
    like a base model's (reused when finished, resumed when interrupted); the learning-rate schedule fits those steps.
    Training prints to train.log in that folder; what is done and why is said through `say`.
    """
    profile = resolve_profile(profile)
    candidates = run_candidates(track, profile)
    for folder in candidates:
        if run_file(folder, "best.pt").is_file():  # an --overwrite under way still holds the old run
            say(f"{track}: using the model in {shown(folder)}")
            return folder
    quick_profile, out = _quick_profile(profile), candidates[-1]
    if max_steps is None and quick_profile != "smoke":
        max_steps = QUICK_STEPS.get(track)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "a", encoding="utf-8") as log:
        def write(line: str) -> None:
            print(line, file=log, flush=True)

        def job(run: RunOptions) -> Pretraining:
            recipe = resolve_recipe(track, dataclasses.replace(run, max_steps=max_steps))
            return Pretraining(recipe, on_record=lambda record: write(format_record(record)))

        stand_in = Prerequisite(label=f"{track} stand-in (the {quick_profile} recipe; its log: train.log)", out=out,
                                profile=quick_profile, job=job, steps=job(RunOptions(out=out, profile=quick_profile))
                                .recipe.train.max_steps)
        notebook = (f"notebook {notebook_number(TRACK_NOTEBOOKS[track])}" if track in TRAINED_IN_A_NOTEBOOK
                    else f"python -m tinylm.train {track}")
        say(f"{track}: no trained model in {shown(out.parent)} ({' or '.join(c.name for c in candidates[:-1])}; "
            f"{notebook} makes one); {stand_in.plan()}. Its text will be rougher than the full run's.")
        stand_in.ensure(say=write)
    return out


def real_model(name: str = "smollm2-135m-instruct", say: Callable[[str], None] = print):
    """(model, tokenizer) of a published model, as `python -m tinylm.interop import --gguf NAME` writes it into
    runs/NAME: loaded from there, or imported first (the GGUF fetched once, or read from the offline mirror)."""
    path = published_model(name, say)
    model, tokenizer, _ = load_model(path)
    say(f"loaded {shown(path.parent)}")
    return model, tokenizer


STORY_SFT_SEED = 42  # notebook 9's first fine-tuning seed: its run folder has no seed suffix


def is_story_sft(folder: Path) -> bool:
    """A finished SFT run of the story task: its report written, its settings naming the verifier's story base."""
    settings = folder / "settings.json"
    return ((folder / "sft_eval.json").is_file() and settings.is_file()
            and "verifier" in json.loads(settings.read_text()).get("task", {}))


def story_sft_run(profile: str, seed: int = STORY_SFT_SEED, *, fallback: Path, device: str | None = None,
                  say: Callable[[str], None] = print) -> Path:
    """Notebook 9's story SFT run at `seed` (runs/notebook-09-<profile>, with -seed<N> for a later seed), or where
    notebook 9 has not made it, the one in `fallback`: fine-tuned there now with notebook 9's settings. A partial
    notebook 9 run is never overwritten."""
    notebook_run = runs_dir() / f"notebook-09-{profile}"
    if seed != STORY_SFT_SEED:
        notebook_run = notebook_run.with_name(f"{notebook_run.name}-seed{seed}")
    for folder in (notebook_run, fallback):
        if is_story_sft(folder):
            return folder
    say(f"no story SFT model in {shown(notebook_run)}: fine-tuning it now in {shown(fallback)}, as notebook 9 does")
    sft(RunOptions(profile=profile, out=fallback, overwrite=True, seed=seed, device=device),
        PostTrainingOptions(task="stories"), say=lambda line: None, on_record=lambda record: None)
    return fallback
