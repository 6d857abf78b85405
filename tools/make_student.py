"""Generate notebooks/ (student versions) from solutions/ (the source).

Every region between nbgrader's `### BEGIN SOLUTION` and `### END SOLUTION` markers is
replaced by a stub (`# YOUR CODE HERE` in code, a prompt in markdown); outputs and
execution counts are dropped. `--check` exits 1 when notebooks/ is out of date.

It never overwrites a notebook that someone changed after it was generated (a student's
answers typed into notebooks/ instead of work/): notebooks/.generated.json, committed with
the notebooks, holds the SHA-256 of what this tool last wrote to each, and a notebook whose
content differs from both that and the new version is left alone unless `--force`.

    python tools/make_student.py          # write notebooks/ (make student)
    python tools/make_student.py --force  # also overwrite edited notebooks (make student FORCE=1)
    python tools/make_student.py --check  # verify only (the tests run this)
"""

from __future__ import annotations

import argparse
import hashlib
import json
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


MANIFEST = ".generated.json"  # in notebooks/: what this tool last wrote, by SHA-256


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_manifest(notebooks: Path) -> dict[str, str]:
    """{notebook name: SHA-256 of what make_student last wrote}; {} when there is none."""
    path = notebooks / MANIFEST
    if not path.exists():
        return {}
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))["notebooks"]
        return {str(name): str(digest) for name, digest in recorded.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"{path} is not a make_student record ({error!r}). Fix: restore it "
                         f"with `git checkout {path.parent.name}/{MANIFEST}`, or delete it and "
                         "run `python tools/make_student.py --force` (that overwrites every "
                         "changed notebook)") from error


def render_manifest(texts: dict[str, str]) -> str:
    return json.dumps({"about": "written by tools/make_student.py: the SHA-256 of each notebook "
                       "it last wrote; it refuses to overwrite one that differs (edited)",
                       "notebooks": {name: sha256(text) for name, text in sorted(texts.items())}},
                      indent=1) + "\n"


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


def edited_notebooks(notebooks: Path, texts: dict[str, str]) -> list[str]:
    """Names whose file differs from what make_student last wrote and from the new version."""
    recorded = read_manifest(notebooks)
    return [name for name, text in texts.items()
            if (current := _read(notebooks / name)) is not None and current != text
            and sha256(current) != recorded.get(name)]


def student_texts(root: Path) -> dict[str, str]:
    """{name: the student notebook's text} for every notebook in root/solutions."""
    return {source.name: render(student_version(nbformat.read(source, as_version=4)))
            for source in sorted((root / "solutions").glob("*.ipynb"))}


def _report_check(stale: list[str], extra: set[str], manifest_stale: bool) -> int:
    for name in stale:
        print(f"out of date: notebooks/{name}")
    for name in sorted(extra):
        print(f"notebooks/{name} has no source in solutions/")
    if manifest_stale:
        print(f"out of date: notebooks/{MANIFEST}")
    if stale or extra or manifest_stale:
        print("Run: python tools/make_student.py")
        return 1
    return 0


def _refuse(edited: list[str]) -> int:
    for name in edited:
        print(f"refusing to overwrite notebooks/{name}: it was changed after make_student "
              "wrote it (answers typed there?)")
    print("Students type in work/ (make lab copies the notebooks there). To keep the changes, "
          "copy them first (e.g. cp notebooks/NAME.ipynb work/); to discard them, run "
          "`make student FORCE=1` (python tools/make_student.py --force).")
    return 1


def generate(root: Path, check: bool = False, force: bool = False) -> int:
    """Write (or with check=True, verify) root/notebooks from root/solutions; the exit code."""
    notebooks = root / "notebooks"
    texts = student_texts(root)
    stale = [name for name, text in texts.items() if _read(notebooks / name) != text]
    manifest = render_manifest(texts)
    manifest_stale = _read(notebooks / MANIFEST) != manifest
    if check:
        extra = {p.name for p in notebooks.glob("*.ipynb")} - set(texts)
        return _report_check(stale, extra, manifest_stale)
    edited = edited_notebooks(notebooks, texts)
    if edited and not force:
        return _refuse(edited)
    notebooks.mkdir(exist_ok=True)
    for name in stale:
        (notebooks / name).write_text(texts[name], encoding="utf-8")
    if manifest_stale:
        (notebooks / MANIFEST).write_text(manifest, encoding="utf-8")
    print(f"wrote {len(stale)} notebook(s)" if stale else "notebooks/ already up to date")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify notebooks/")
    parser.add_argument("--force", action="store_true",
                        help="overwrite notebooks that were changed after they were generated")
    args = parser.parse_args(argv)
    try:
        return generate(ROOT, check=args.check, force=args.force)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
