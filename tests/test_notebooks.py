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


def _exercise_cells(path):
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code" and "### BEGIN SOLUTION" in c.source]


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
