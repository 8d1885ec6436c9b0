"""The repository around the package: its address and branch, the notebooks that train or score each track's model,
and how to open one from here (Jupyter on the file in a clone; its Colab address where the package came from a wheel,
as on Colab, with no notebooks/ folder). The notebooks' badges and install cells and a command's closing lines read
it."""

from __future__ import annotations

from pathlib import Path

from ..paths import shown

REPOSITORY = "https://github.com/tinylm-course/tinylm"
BRANCH = "main"

# The notebook that teaches each track's training; each trains a model of its track into
# runs/notebook-<number>-<profile> (tinylm.course.notebooks.notebook_run_folder). Notebook 6a's is its 2-process run
# (the smoke recipe's shape in every profile: a demonstration of the mechanics). Notebook 14 trains `train text`'s
# runs on a text of your choice, one folder per tokenizer and seed inside runs/notebook-14-<profile>.
TRACK_NOTEBOOKS = {"shakespeare-char": "03b_train_char_gpt.ipynb", "tinystories": "05_tinystories.ipynb",
                   "gpt2-124m": "06a_gpt2_124m_budget_and_ddp.ipynb", "text": "14_your_own_model.ipynb"}
# The notebook to open after a track's run, where it is not the one that trains it: notebook 6b teaches how a
# gpt2-124m run is scored (`python -m tinylm.eval core --ckpt RUN`) beside OpenAI's GPT-2.
EVALUATION_NOTEBOOKS = {"gpt2-124m": "06b_gpt2_124m_evaluation.ipynb"}
# Where the course starts: tensors and autograd (skip to notebook 1, which begins with shakespeare-char's data, if
# you know PyTorch).
FIRST_NOTEBOOK = "00_tensors_and_autograd.ipynb"


def colab_url(notebook: str) -> str:
    """Where Colab opens `notebook` (a file name in notebooks/, e.g. "07_generation.ipynb") from GitHub."""
    github = REPOSITORY.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{github}/blob/{BRANCH}/notebooks/{notebook}"


def open_notebook_command(notebook: str) -> str:
    """How to open `notebook` from here: `jupyter lab` on its file in a clone of the repository, else its Colab
    address."""
    path = Path(__file__).resolve().parents[2] / "notebooks" / notebook
    if path.is_file():
        return f"jupyter lab {shown(path)}"
    return f"{colab_url(notebook)}   # open it in Colab"


def next_notebooks(track: str) -> list[str]:
    """The notebooks to open after training `track` from the command line: after shakespeare-char (README's first
    command) the course's first notebook; then the one that scores such a run (its own, for most tracks; for a run on
    your own text, notebook 14, which compares tokenizers and exports); then generation."""
    own = EVALUATION_NOTEBOOKS.get(track, TRACK_NOTEBOOKS.get(track))
    start = [FIRST_NOTEBOOK] if track == "shakespeare-char" else []
    return [*start, *([own] if own else []), "07_generation.ipynb"]
