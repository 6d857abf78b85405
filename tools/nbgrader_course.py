"""Run the course as an nbgrader course: a course folder whose assignments are the notebooks.

Two kinds of assignment come out of one solutions/ notebook:

- **as released** (`--plain`): the solution itself. `nbgrader generate_assignment` with the
  configuration below writes the same student notebook as tools/make_student.py (the stubs
  `# YOUR CODE HERE` and `_Write your answer here._`); nothing is graded automatically.
- **graded** (the default): every exercise cell becomes an nbgrader "autograded answer" cell,
  and after it comes an "autograder tests" cell (one point) whose hidden test runs the same
  `mclab.checks` call as the exercise, after asserting that the answer is no longer the stub's
  `None` (the check itself only prints "not solved yet" for `None`, so a student can run on).
  The released notebook is make_student's plus those test cells, empty of their hidden part;
  `nbgrader autograde` puts the hidden tests back, so an untouched notebook scores zero and a
  solved one full marks (tests/test_nbgrader.py shows both).

    python tools/nbgrader_course.py COURSE                  # every notebook, graded
    python tools/nbgrader_course.py COURSE --plain          # every notebook, as released
    python tools/nbgrader_course.py COURSE --only 08_choosing_a_method.ipynb
Then, in COURSE: `nbgrader generate_assignment NAME`, `nbgrader release_assignment NAME`,
... (docs/instructor-guide.md, "A class on JupyterHub with nbgrader").
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_student import BEGIN  # noqa: E402

# nbgrader's stubs set to make_student's, so both write the same student notebook; the
# solutions' exercise cells carry nbgrader's markers without its cell metadata, which nbgrader
# refuses unless enforce_metadata is off.
CONFIG = """\
# Written by tools/nbgrader_course.py: nbgrader writes the stubs tools/make_student.py writes.
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.ClearSolutions.code_stub = {{"python": "# YOUR CODE HERE"}}
c.ClearSolutions.text_stub = "_Write your answer here._"
c.ClearSolutions.enforce_metadata = False
c.ExecutePreprocessor.timeout = {timeout}
"""
CHECK_CALL = re.compile(r"^checks\.check_\w+\(", re.M)
TEST_NOTE = "# Graded by nbgrader: a hidden test runs this exercise's check again.\n"


def _metadata(grade_id: str, *, solution: bool, grade: bool, points: int = 0) -> dict:
    meta = {"grade": grade, "grade_id": grade_id, "locked": not solution,
            "schema_version": 3, "solution": solution, "task": False}
    if grade:
        meta["points"] = points
    return {"nbgrader": meta}


def hidden_test(exercise_source: str) -> str:
    """The test cell's source: the exercise's check call, refusing the stub's `None`."""
    calls = [m.start() for m in CHECK_CALL.finditer(exercise_source)]
    if not calls:
        raise ValueError(f"an exercise cell without a `checks.check_*(` line:\n{exercise_source}")
    call = exercise_source[calls[-1]:].rstrip()
    answer = ast.unparse(ast.parse(call).body[0].value.args[0])
    return (f"{TEST_NOTE}### BEGIN HIDDEN TESTS\n"
            f"assert {answer} is not None, \"{answer} is still the stub's None: not answered\"\n"
            f"{call}\n### END HIDDEN TESTS")


def graded_notebook(nb: dict, prefix: str) -> dict:
    """`nb` (a solution) with each code exercise an autograded answer and a hidden test after it."""
    cells = []
    number = 0
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        cells.append(cell)
        if BEGIN not in source:
            continue
        number += 1
        grade_id = f"{prefix}-exercise-{number}"
        if cell["cell_type"] != "code":  # a written answer: released and collected, not scored
            cell["metadata"] = {**cell["metadata"], **_metadata(grade_id, solution=True,
                                                                   grade=False)}
            continue
        cell["metadata"] = {**cell["metadata"], **_metadata(grade_id, solution=True, grade=False)}
        test = {"cell_type": "code", "execution_count": None, "outputs": [],
                "metadata": _metadata(f"{grade_id}-test", solution=False, grade=True, points=1),
                "source": hidden_test(source).splitlines(keepends=True)}
        cells.append(test)
    return {**nb, "cells": cells}


def write_course(course: Path, names: list[str], graded: bool = True, timeout: int = 1800,
                 solutions: Path = ROOT / "solutions", assignment: str | None = None
                 ) -> list[Path]:
    """A course folder: nbgrader_config.py and source/<stem>/<notebook> for each name (all
    in source/<assignment>/ when an assignment name is given)."""
    course.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(root=str(course), timeout=timeout))
    written = []
    for name in names:
        nb = json.loads((solutions / name).read_text(encoding="utf-8"))
        stem = Path(name).stem
        if graded:
            nb = graded_notebook(nb, stem.split("_")[0])
        folder = course / "source" / (assignment or stem)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n",
                                   encoding="utf-8")
        written.append(folder / name)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("course", type=Path, help="the nbgrader course folder to write")
    parser.add_argument("--plain", action="store_true", help="the notebooks as released, ungraded")
    parser.add_argument("--only", nargs="*", help="notebook file names (default: all)")
    args = parser.parse_args(argv)
    names = args.only or sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    try:
        for path in write_course(args.course.resolve(), names, graded=not args.plain):
            print(f"wrote {path}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
