"""Re-run a notebook under the cpu profile, in place, and print which figures in its outputs moved.

    python scripts/refresh_notebook.py 07                 # notebooks/07_*.ipynb, re-run and compared
    python scripts/refresh_notebook.py 07 --profile smoke # a quick run (its outputs are not the committed kind)
    python scripts/refresh_notebook.py 07 --compare OLD.ipynb   # compare only: OLD against the notebook as it is

The committed outputs come from a real cpu run made this way (widgets printed as text, streamed output coalesced, no
cell timings). It lists each printed number that changed, cell by cell (claims.py, beside this file), and the study
time: re-read every sentence near a figure that moved. Run it from the repository's root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from claims import moved_figures, notebook_cells, study_time  # noqa: E402  (beside this file)


def find_notebook(number: str) -> Path:
    matches = sorted((REPO / "notebooks").glob(f"{number}*.ipynb"))
    if len(matches) != 1:
        names = ", ".join(p.name for p in sorted((REPO / "notebooks").glob("*.ipynb")))
        sys.exit(f"error: {number!r} names {len(matches)} notebooks; give its number or name, one of: {names}")
    return matches[0]


def execute(notebook: Path, env: dict, output: Path | None = None, timeout: int = 3600,
            capture: bool = False) -> subprocess.CompletedProcess:
    """Execute `notebook` the way its committed outputs were made (widgets printed as text, streamed output
    coalesced, no per-cell timing metadata), in place or into `output`, with `env` as the kernel's environment."""
    target = ["--output", str(output)] if output is not None else ["--inplace"]
    command = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute", *target,
               f"--ExecutePreprocessor.timeout={timeout}", "--ExecutePreprocessor.record_timing=False",
               '--NotebookExporter.preprocessors=["nbconvert.preprocessors.CoalesceStreamsPreprocessor"]',
               str(notebook)]
    return subprocess.run(command, cwd=REPO, env={**env, "TINYLM_WIDGETS": "0"}, capture_output=capture, text=True)


def run(notebook: Path, profile: str) -> float:
    """Execute the notebook in place under `profile`; returns the wall time in seconds."""
    started = time.perf_counter()
    done = execute(notebook, {**os.environ, "TINYLM_PROFILE": profile})
    if done.returncode != 0:
        sys.exit(f"error: the notebook failed under the {profile} profile (exit {done.returncode}); its file keeps "
                 "the outputs up to the failing cell: git diff shows them, git checkout restores it")
    return time.perf_counter() - started


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", help="the notebook's number (07) or the start of its name")
    parser.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "gpu"))
    parser.add_argument("--compare", type=Path, metavar="OLD", help="do not run: compare OLD with the notebook")
    args = parser.parse_args(argv)
    notebook = find_notebook(args.notebook)
    if args.compare is not None:
        old, seconds = notebook_cells(args.compare), None
    else:
        with tempfile.TemporaryDirectory() as scratch:
            saved = Path(scratch) / notebook.name
            shutil.copy(notebook, saved)
            old = notebook_cells(saved)
        seconds = run(notebook, args.profile)
    moved = moved_figures(old, notebook_cells(notebook))
    print(f"{notebook.relative_to(REPO)}: {len(moved)} cell(s) with figures that moved" + (":" if moved else ""))
    for line in moved:
        print(f"  {line}")
    if seconds is not None:
        print(f"ran in {seconds:.0f} s under the {args.profile} profile; the outputs are in the notebook (git diff "
              "shows them)")
    time_ = study_time(notebook)
    print("study time by the formula: " + json.dumps({"prose_words": time_.prose_words, "code_lines":
          time_.code_lines, "runtime_seconds": time_.runtime_seconds, "lesson_minutes": round(time_.lesson_minutes),
          "exercises": time_.exercises, "exercise_minutes": round(time_.exercise_minutes)}))
    from course_guide import replace_table, stale_time_paragraphs, tables

    behind = sorted({str(path.relative_to(REPO)) for path, name, table in tables(REPO)
                     if replace_table(text := path.read_text(encoding="utf-8"), name, table) != text})
    behind += [f"notebooks/{file} (its header's time)" for file in stale_time_paragraphs(REPO / "notebooks")]
    if behind:
        print(f"course tables behind the notebooks in {', '.join(behind)}: python scripts/course_tables.py")


if __name__ == "__main__":
    main()
