"""Rewrite the course tables of README.md and notebooks/README.md from the notebooks' saved outputs.

    python scripts/course_tables.py          # rewrite them
    python scripts/course_tables.py --check  # exit 1 if a committed table differs

The rows, and how runtimes and study times are read from the notebooks, are in tinylm.course.guide. Run it after
scripts/refresh_notebook.py has refreshed a notebook's outputs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tinylm.course.guide import replace_table, tables  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ")
    args = parser.parse_args(argv)
    stale = []
    for path, (name, table) in tables(ROOT).items():
        text = path.read_text(encoding="utf-8")
        new = replace_table(text, name, table)
        if new != text:
            stale.append(path.relative_to(ROOT))
            if not args.check:
                path.write_text(new, encoding="utf-8")
    verb = "differs" if args.check else "rewritten"
    for path in stale:
        print(f"{path}: course table {verb}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
