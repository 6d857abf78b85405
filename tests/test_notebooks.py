"""notebooks/ is generated from solutions/, stays in step, and every exercise is checked."""

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

import mclab.checks
from mclab.checks import REGISTRY

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = sorted((ROOT / "solutions").glob("*.ipynb"))


def test_student_notebooks_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_student.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", SOLUTIONS + sorted((ROOT / "notebooks").glob("*.ipynb")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, path


def _code_sources(path):
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def _exercise_cells(path):
    return [source for source in _code_sources(path) if "### BEGIN SOLUTION" in source]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_every_exercise_has_a_check_and_three_levels(path):
    cells = _exercise_cells(path)
    assert len(cells) >= 3, f"{path.name} has {len(cells)} exercises; the course wants >= 3"
    for source in cells:
        assert re.search(r"checks\.check_\w+\(", source), f"an exercise without a check:\n{source}"
    text = nbformat.read(path, as_version=4)
    markdown = " ".join(c.source.lower() for c in text.cells if c.cell_type == "markdown")
    for level in ("easy", "medium", "hard"):
        assert f"**{level}" in markdown, f"{path.name} has no {level} exercise"


def test_every_registered_check_is_used_by_a_solution():
    for module in pkgutil.iter_modules(mclab.checks.__path__):
        importlib.import_module(f"mclab.checks.{module.name}")
    used = {name for path in SOLUTIONS for source in _exercise_cells(path)
            for name in re.findall(r"checks\.(check_\w+)\(", source)}
    assert set(REGISTRY) <= used, f"checks with no exercise: {sorted(set(REGISTRY) - used)}"


def test_stub_replaces_only_the_solution():
    sys.path.insert(0, str(ROOT / "tools"))
    from make_student import stub_source

    source = "x = None\n### BEGIN SOLUTION\nx = 42\n### END SOLUTION\ncheck(x)"
    assert stub_source(source, "code") == "x = None\n# YOUR CODE HERE\ncheck(x)"
    with pytest.raises(ValueError, match="unbalanced"):
        stub_source("### BEGIN SOLUTION\nx = 1", "code")


def test_student_tail_starts_at_the_first_difference():
    sys.path.insert(0, str(ROOT / "tools"))
    from make_student import student_tail_start

    assert student_tail_start(["a", "b", "c"], ["a", "B", "c"]) == 1
    assert student_tail_start(["a", "b"], ["a", "b"]) == 2
    with pytest.raises(ValueError, match="make_student"):
        student_tail_start(["a", "b"], ["a"])


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_student_tail_holds_every_exercise(path):
    """`make test` runs only the student copy's tail: it must start exactly at the first
    exercise, and everything before it is the solution's own code."""
    sys.path.insert(0, str(ROOT / "tools"))
    from make_student import student_tail_start

    solution = _code_sources(path)
    start = student_tail_start(solution, _code_sources(ROOT / "notebooks" / path.name))
    exercises = [i for i, source in enumerate(solution) if "### BEGIN SOLUTION" in source]
    assert exercises and start == exercises[0]


NOTEBOOK = """{{"cells": [{cells}], "metadata": {{"kernelspec": {{"name": "python3",
 "display_name": "Python 3", "language": "python"}}}}, "nbformat": 4, "nbformat_minor": 4}}"""


def _notebook(*sources):
    import json

    cells = ", ".join(json.dumps({"cell_type": "code", "metadata": {}, "outputs": [],
                                  "execution_count": None, "source": s}) for s in sources)
    return NOTEBOOK.format(cells=cells)


def test_a_stub_that_breaks_a_later_cell_fails_make_test(tmp_path):
    """The collector runs the student tail for real: a later cell that needs the solved
    answer fails as `student Cell N`, and the solution itself passes."""
    import shutil

    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "make_student.py", tmp_path / "tools" / "make_student.py")
    (tmp_path / "solutions").mkdir()
    (tmp_path / "notebooks").mkdir()
    first, later = "x = 1", "print(answer + 1)"
    solved = "answer = None\n### BEGIN SOLUTION\nanswer = 41\n### END SOLUTION"
    stub = "answer = None\n# YOUR CODE HERE"
    (tmp_path / "solutions" / "nb.ipynb").write_text(_notebook(first, solved, later))
    (tmp_path / "notebooks" / "nb.ipynb").write_text(_notebook(first, stub, later))
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v",
                             "--course-notebooks", "solutions"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    out = result.stdout
    assert result.returncode == 1, out
    assert re.search(r"student Cell 2 FAILED", out), out
    assert re.search(r"::Cell 0 PASSED", out) and re.search(r"::Cell 2 PASSED", out), out
    assert "student Cell 0" not in out  # the shared prefix runs once
