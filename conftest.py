"""How `make test` executes the notebooks: each course notebook once, its student copy's tail
in the same kernel.

A student notebook is its solution with every exercise region replaced by a stub
(tools/make_student.py; tests/test_notebooks.py checks that notebooks/ is up to date). Its
cells before the first exercise are the solution's, character for character, so executing
them twice proves nothing new. `pytest solutions` (with `--course-notebooks`) collects one
nbval notebook per course notebook whose cells run, in one kernel:

1. the solution's code cells before the first cell that differs in the student copy;
2. the student copy's cells from there on (`student Cell N`): stubs and every later cell, on
   exactly the state a student has at that point, so a stub that breaks a later cell fails;
3. the solution's cells from there on: every exercise solved, and its check must pass.

Each notebook costs one execution plus its exercise tail instead of two executions.

`make test` also deletes each notebook's run folders once its last cell has run
(MCLAB_TEST_CLEAN_RUNS=1): every full-weight run saves a ~520 MB model.

`make test` runs two pytest-xdist workers, whole files to each (`--dist loadfile`, so a
notebook's cells share one kernel), with one torch thread each: measured on 2 cores,
notebooks 00 and 04 took 88 s side by side against 106 s one after the other with 2 threads.
"""

import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent / "tools"))
from make_student import student_tail_start  # noqa: E402


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs 2 workers), each worker gets its own runs folder:
    a notebook's clean-up below must never delete the runs of the one beside it."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker and os.environ.get("MCLAB_RUNS"):
        os.environ["MCLAB_RUNS"] = str(Path(os.environ["MCLAB_RUNS"]) / worker)


def pytest_addoption(parser):
    parser.addoption("--course-notebooks", action="store_true",
                     help="execute solutions/*.ipynb with their student copies' tails (nbval)")


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def pytest_collect_file(file_path, parent):
    config = parent.config
    if (not config.getoption("--course-notebooks") or file_path.suffix != ".ipynb"
            or file_path.parent.name != "solutions"):
        return None
    return _course_notebook_class().from_parent(parent, path=file_path)


def _course_notebook_class():
    from nbval.plugin import IPyNbCell, IPyNbFile

    class CourseNotebook(IPyNbFile):
        """nbval's notebook collector, over the cell sequence described above.

        Written for nbval 0.11: it overrides `IPyNbFile.collect` (which sets `self.nb`) and
        builds `IPyNbCell`s as nbval does; nbval runs them in its one kernel per file.
        """

        def collect(self):
            self.nb = nbformat.read(str(self.fspath), as_version=4)
            solution = _code_cells(self.nb)
            student_path = Path(self.fspath).parent.parent / "notebooks" / Path(self.fspath).name
            student = _code_cells(nbformat.read(student_path, as_version=4))
            start = student_tail_start([c.source for c in solution], [c.source for c in student])
            plan = ([("Cell", i, c) for i, c in enumerate(solution[:start])]
                    + [("student Cell", start + i, c) for i, c in enumerate(student[start:])]
                    + [("Cell", start + i, c) for i, c in enumerate(solution[start:])])
            for number, (label, index, cell) in enumerate(plan):
                options = defaultdict(bool, check=False)  # outputs not compared (as --nbval-lax)
                yield IPyNbCell.from_parent(self, name=f"{label} {index}", cell_num=number,
                                            cell=cell, options=options)

    return CourseNotebook


def pytest_runtest_teardown(item, nextitem):
    if os.environ.get("MCLAB_TEST_CLEAN_RUNS") != "1" or item.path.suffix != ".ipynb":
        return
    if nextitem is not None and nextitem.path == item.path:
        return
    runs = os.environ.get("MCLAB_RUNS")
    if runs:
        for entry in Path(runs).glob("*"):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
