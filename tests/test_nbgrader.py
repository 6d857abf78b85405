"""nbgrader runs the course: `generate_assignment` writes what tools/make_student.py writes, and
`autograde` gives a solved notebook full marks and an untouched one zero, by the same
mclab.checks (tools/nbgrader_course.py builds the course folder).

Autograde executes whole notebooks; to stay quick it grades a small assignment built from
notebook 08's three code exercises (its imports, the saved report, the exercise cells), which
needs no model. The same converter builds every notebook's graded version.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_student import BEGIN, stub_source  # noqa: E402
from nbgrader_course import graded_notebook, hidden_test, write_course  # noqa: E402

pytest.importorskip("nbgrader", reason="nbgrader is in requirements.lock: run `make setup`")


def _nbgrader(course: Path, *args: str, timeout: int = 900) -> str:
    env = dict(os.environ)
    # nbgrader runs the `alembic` command of its environment (installed beside python)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def _cells(path: Path) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in nbformat.read(path, as_version=4).cells]


def test_generate_assignment_writes_what_make_student_writes(tmp_path):
    names = sorted(p.name for p in (ROOT / "solutions").glob("*.ipynb"))
    write_course(tmp_path, names, graded=False, assignment="course")
    _nbgrader(tmp_path, "generate_assignment", "course")
    for name in names:
        released = tmp_path / "release" / "course" / name
        assert _cells(released) == _cells(ROOT / "notebooks" / name), name


def test_hidden_test_refuses_the_stub_and_runs_the_check():
    source = "answer = None\n### BEGIN SOLUTION\nanswer = 1\n### END SOLUTION\n" \
             "checks.check_x(answer, table)"
    test = hidden_test(source)
    assert "### BEGIN HIDDEN TESTS\nassert answer is not None" in test
    assert test.endswith("checks.check_x(answer, table)\n### END HIDDEN TESTS")
    with pytest.raises(ValueError, match="check"):
        hidden_test("x = 1")


def _exercise_assignment(tmp_path: Path) -> Path:
    """Notebook 08's imports, its report, and its code exercises: a solutions/ notebook."""
    nb = json.loads((ROOT / "solutions" / "08_choosing_a_method.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    imports = next(c for c in code if "from mclab.checks import" in "".join(c["source"]))
    exercises = [c for c in code if BEGIN in "".join(c["source"])]
    assert len(exercises) >= 3  # 08's code exercises, each one point
    data = nbformat.v4.new_code_cell(
        "result = report.load_report()\ntable = report.frame(result)\n"
        "verdicts = result.get(\"verdicts\", [])")
    small = {**nb, "cells": [imports, dict(data), *exercises]}
    folder = tmp_path / "solutions"
    folder.mkdir()
    (folder / "exercises.ipynb").write_text(json.dumps(small, indent=1))
    return folder


def _submit(course: Path, student: str, nb) -> None:
    folder = course / "submitted" / student / "exercises"
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / "exercises.ipynb")


def test_autograde_gives_full_marks_to_a_solution_and_zero_to_a_stub(tmp_path):
    course = tmp_path / "course"
    solutions = _exercise_assignment(tmp_path)
    write_course(course, ["exercises.ipynb"], solutions=solutions, timeout=600)
    source = json.loads((course / "source" / "exercises" / "exercises.ipynb").read_text())
    assert source == graded_notebook(json.loads((solutions / "exercises.ipynb").read_text()),
                                     "exercises")
    _nbgrader(course, "generate_assignment", "exercises")
    released = nbformat.read(course / "release" / "exercises" / "exercises.ipynb", as_version=4)
    # the release is make_student's notebook plus the test cells, their hidden part removed
    tests = [c for c in released.cells if c.metadata.get("nbgrader", {}).get("grade")]
    n_exercises = sum(BEGIN in "".join(c["source"])
                      for c in json.loads((solutions / "exercises.ipynb").read_text())["cells"])
    assert len(tests) == n_exercises and all("HIDDEN" not in c.source and "assert" not in c.source
                                   for c in tests)
    expected = [stub_source(c["source"] if isinstance(c["source"], str) else
                            "".join(c["source"]), c["cell_type"])
                for c in json.loads((solutions / "exercises.ipynb").read_text())["cells"]]
    assert [c.source for c in released.cells if c not in tests] == expected

    solved = copy.deepcopy(released)  # a student who typed the solutions in
    answers = iter(c for c in source["cells"] if c["metadata"].get("nbgrader", {}).get("solution"))
    for cell in solved.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "".join(next(answers)["source"])
    _submit(course, "solver", solved)
    _submit(course, "untouched", released)
    _nbgrader(course, "autograde", "exercises", "--create", "--force")

    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission("exercises", s) for s in ("solver", "untouched")}
        assert scores["solver"].max_score == n_exercises
        assert scores["solver"].score == n_exercises, "a solved notebook lost points"
        assert scores["untouched"].score == 0, "an untouched notebook got points"
