"""Rewrite the course tables of README.md, notebooks/README.md and notebooks/TEACHING.md, the course guide's
notebook entries and each notebook header's time paragraph, from the notebooks (course_guide.py, beside this file).

    python scripts/course_tables.py                  # rewrite them
    python scripts/course_tables.py --check          # exit 1 if a committed table differs
    python scripts/course_tables.py --measure-smoke  # first run every notebook under smoke and record its runtime

Run it after scripts/refresh_notebook.py, or after a notebook's prose, code or exercises changed. --measure-smoke runs
copies of the notebooks in course order with a scratch runs folder, and writes notebooks/smoke_runtimes.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings: claims, course_guide, refresh_notebook

from claims import study_time  # noqa: E402
from course_guide import (  # noqa: E402
    LESSONS,
    SMOKE_RUNTIMES,
    replace_table,
    rewrite_time_paragraph,
    stale_time_paragraphs,
    tables,
)
from refresh_notebook import execute  # noqa: E402  (one way to execute a notebook)
from tqdm.auto import tqdm  # noqa: E402

from tinylm.runtime import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def measure_smoke(notebooks: Path) -> dict:
    """Run every notebook under smoke, in course order, into a scratch folder; the seconds each one printed."""
    seconds = {}
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "TINYLM_PROFILE": "smoke", "TINYLM_RUNS_DIR": str(Path(scratch) / "runs")}
        for lesson in tqdm(LESSONS, desc="notebooks under smoke", unit="notebook"):
            ran = Path(scratch) / lesson.file
            done = execute(notebooks / lesson.file, env, output=ran, timeout=600, capture=True)
            if done.returncode != 0:
                last = (done.stderr.strip().splitlines() or ["no message"])[-1]
                sys.exit(f"error: notebook {lesson.number} failed under smoke ({last}); to see where, run "
                         f"TINYLM_PROFILE=smoke pytest notebooks/{lesson.file}; nothing was written")
            seconds[lesson.file] = study_time(ran).runtime_seconds
    return {"machine": cpu_name(), "seconds": seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ")
    parser.add_argument("--measure-smoke", action="store_true",
                        help=f"first run every notebook under smoke and write notebooks/{SMOKE_RUNTIMES}")
    args = parser.parse_args(argv)
    if args.measure_smoke:
        measured = measure_smoke(ROOT / "notebooks")
        path = ROOT / "notebooks" / SMOKE_RUNTIMES
        path.write_text(json.dumps(measured, indent=1) + "\n", encoding="utf-8")
        print(f"smoke runtimes of {len(measured['seconds'])} notebooks written to {path.relative_to(ROOT)}")
    notebooks = ROOT / "notebooks"
    if args.check:
        stale = [f"notebooks/{file}: the header's time paragraph" for file in stale_time_paragraphs(notebooks)]
    else:  # the paragraph is prose the formula counts: rewrite until it states its own count
        changed = set()
        for _ in range(3):
            rewritten = {lesson.file for lesson in LESSONS if rewrite_time_paragraph(notebooks / lesson.file)}
            changed |= rewritten
            if not rewritten:
                break
        stale = [f"notebooks/{file}: the header's time paragraph" for file in sorted(changed)]
    for path, name, table in tables(ROOT):
        text = path.read_text(encoding="utf-8")
        new = replace_table(text, name, table)
        if new != text:
            stale.append(f"{path.relative_to(ROOT)}: course table {name}")
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "differs" if args.check else "rewritten"
    for where in stale:
        print(f"{where} {verb}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
