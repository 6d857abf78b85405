"""Generate notebooks/ (student versions) from solutions/ (the source).

Every region between nbgrader's `### BEGIN SOLUTION` and `### END SOLUTION` markers is
replaced by a stub (`# YOUR CODE HERE` in code, a prompt in markdown); outputs and
execution counts are dropped. `--check` exits 1 when notebooks/ is out of date.

    python tools/make_student.py          # write notebooks/
    python tools/make_student.py --check  # verify only (the tests run this)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
REGION = re.compile(rf"^([ \t]*){re.escape(BEGIN)}[^\n]*\n.*?^[ \t]*{re.escape(END)}[^\n]*$",
                    re.S | re.M)


def stub_source(source: str, cell_type: str) -> str:
    if source.count(BEGIN) != source.count(END):
        raise ValueError(f"unbalanced solution markers in a cell:\n{source[:200]}")
    if cell_type == "markdown":
        return REGION.sub(lambda m: f"{m.group(1)}_Write your answer here._", source)
    return REGION.sub(lambda m: f"{m.group(1)}# YOUR CODE HERE", source)


def student_version(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.from_dict(solution)
    for cell in nb.cells:
        cell.source = stub_source(cell.source, cell.cell_type)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.pop("id", None)
    nb.metadata.pop("widgets", None)
    nb.nbformat_minor = 4
    return nb


def student_tail_start(solution: list[str], student: list[str]) -> int:
    """Index of the first code cell where a student copy differs from its solution.

    Every cell before it is the solution's own, so `make test` runs those once for both
    (conftest.py); from here on it runs the student's cells, then the solution's.
    """
    if len(solution) != len(student):
        raise ValueError(f"the student copy has {len(student)} code cells, the solution "
                         f"{len(solution)}; run `python tools/make_student.py`")
    for index, (a, b) in enumerate(zip(solution, student)):
        if a != b:
            return index
    return len(solution)


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify notebooks/")
    args = parser.parse_args(argv)
    stale = []
    for source in sorted((ROOT / "solutions").glob("*.ipynb")):
        text = render(student_version(nbformat.read(source, as_version=4)))
        target = ROOT / "notebooks" / source.name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target.relative_to(ROOT))
            if not args.check:
                target.write_text(text, encoding="utf-8")
    extra = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")} - \
        {p.name for p in (ROOT / "solutions").glob("*.ipynb")}
    if args.check and (stale or extra):
        for path in stale:
            print(f"out of date: {path}")
        for name in sorted(extra):
            print(f"notebooks/{name} has no source in solutions/")
        print("Run: python tools/make_student.py")
        return 1
    if not args.check:
        print(f"wrote {len(stale)} notebook(s)" if stale else "notebooks/ already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
