"""Every notebook's first cells: the Colab badge opens the notebook itself, and the install cell installs the package,
both from the course's repository (tinylm.course.repository names it; tinylm.course.notebooks writes both cells), in
both jupytext twins; and each notebook sets up once, as the commands do. A notebook copied from another keeps the
other's badge, and a repository that moves leaves every badge and install cell behind: both fail here.
"""

import re
from pathlib import Path

import jupytext
import pytest

from tinylm.course import notebooks as course

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
# The .py twins sit in notebooks/py/, out of the learner's view; a split notebook keeps its number (08a_, 08b_).
PAIRS = sorted(NOTEBOOKS.glob("py/[0-9][0-9]*_*.py"))


def ipynb_of(twin: Path) -> Path:
    return NOTEBOOKS / twin.with_suffix(".ipynb").name


def test_every_notebook_has_both_twins_paired_the_way_jupytext_is_configured():
    assert len(PAIRS) >= 9
    assert sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")) == [p.stem for p in PAIRS]
    assert not list(NOTEBOOKS.glob("*.py")), "a .py twin beside the .ipynb shows the notebook twice in Jupyter"
    for twin in PAIRS:
        for path in (twin, ipynb_of(twin)):
            assert jupytext.read(path).metadata["jupytext"]["formats"] == "ipynb,py//py:percent", path


@pytest.mark.parametrize("path", [twin for pair in PAIRS for twin in (pair, ipynb_of(pair))],
                         ids=lambda p: p.name)
def test_the_badge_and_the_install_cell_agree_with_tinylm_course(path):
    notebook = jupytext.read(path)
    cells = notebook.cells
    assert cells[0].cell_type == "markdown" and cells[1].cell_type == "code"
    badges = [line for line in cells[0].source.splitlines() if "colab-badge" in line]
    assert len(badges) == 1, "the first cell holds one Open in Colab badge"
    own_name = path.with_suffix(".ipynb").name
    assert badges[0].rstrip(")").endswith(f"/notebooks/{own_name}"), "the badge opens this very notebook"
    assert badges[0] == course.colab_badge(own_name)
    assert cells[1].source == course.INSTALL_CELL
    later = "\n".join(cell.source for cell in cells[2:])
    assert "git+https://" not in later and "colab.research.google.com/github" not in later, \
        "only the first cells name the repository"


@pytest.mark.parametrize("path", [twin for pair in PAIRS for twin in (pair, ipynb_of(pair))],
                         ids=lambda p: p.name)
def test_every_notebook_sets_up_as_the_commands_do_before_it_uses_the_profile(path):
    """Notebooks 1, 2, 4, 6a and 7 never made the commands' process-wide settings (configure_backend), so on a busy
    machine they ran more threads than free cores; the others made them three ways. Each now makes one call,
    tinylm.set_up_notebook, in the cell that first needs the profile, and resolves nothing by hand."""
    code = [cell.source for cell in jupytext.read(path).cells if cell.cell_type == "code"]
    calls = [at for at, source in enumerate(code) if "tinylm.set_up_notebook(" in source]
    assert len(calls) == 1 and code[calls[0]].count("tinylm.set_up_notebook(") == 1
    assert calls[0] == next(at for at, source in enumerate(code) if re.search(r"\bPROFILE\b", source))
    assert not re.search(r"configure_backend|resolve_profile|resolve_device", "\n".join(code))


def test_the_repository_is_a_github_one_and_the_install_cell_is_python():
    assert course.REPOSITORY.startswith("https://github.com/") and course.REPOSITORY.count("/") == 4  # owner/name
    compile(course.INSTALL_CELL, "install cell", "exec")


def test_the_readme_install_and_the_colab_install_both_bring_transformers():
    """`pip install -r requirements.txt` (the README's first command) and the Colab install cell must both make
    `import transformers` and `import lm_eval` work: notebook 6b loads OpenAI's GPT-2 and runs the harness."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root = NOTEBOOKS.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    with_transformers = {name for name, needs in extras.items() if any(n.startswith("transformers") for n in needs)}
    lines = [line.split("#")[0].strip() for line in (root / "requirements.txt").read_text().splitlines()]
    package_extras = {extra.strip() for line in lines if line.startswith("-e .[")
                      for extra in line.removeprefix("-e .[").removesuffix("]").split(",")}
    assert package_extras & with_transformers, "requirements.txt installs no extra that holds transformers"
    assert "interop" in with_transformers
    assert "tinylm[interop,harness] @ " in course.INSTALL_CELL and {"interop", "harness"} <= package_extras
    assert "tinylm[interop,harness]" in extras["test"]


@pytest.mark.parametrize("twin", PAIRS, ids=lambda p: p.stem)
def test_the_twins_hold_the_same_cells(twin):
    """Edit the .py, then `jupytext --sync notebooks/py/*.py`: a twin left behind fails here, not in review."""
    text, notebook = jupytext.read(twin), jupytext.read(ipynb_of(twin))
    assert [(c.cell_type, c.source) for c in text.cells] == [(c.cell_type, c.source) for c in notebook.cells]


@pytest.mark.parametrize("twin", PAIRS, ids=lambda p: p.stem)
def test_committed_outputs_carry_no_execution_timestamps(twin):
    """Outputs are committed from nbconvert runs without timing (README, "Notebooks"); a timestamp left from an
    earlier draft would contradict the times the outputs themselves print."""
    stamped = [i for i, cell in enumerate(jupytext.read(ipynb_of(twin)).cells) if "execution" in cell.metadata]
    assert not stamped, f"cells {stamped} carry metadata.execution: strip it"

