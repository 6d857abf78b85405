"""Student work is never lost: an edited copy survives `make lab`'s copy step, `make student`
and an update of solutions/ (tools/student_work.py, tools/make_student.py; no notebook runs)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from make_student import MANIFEST, generate  # noqa: E402
from student_work import RECORD, describe, main, sync_work  # noqa: E402

SOLVED = "answer = None\n### BEGIN SOLUTION\nanswer = {value}\n### END SOLUTION\ncheck(answer)"
ANSWER = "answer = None\nanswer = 41  # the student's answer\ncheck(answer)"


def _write_solution(root: Path, name: str, value: int = 42, intro: str = "x = 1") -> None:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(intro),
                                         nbformat.v4.new_code_cell(SOLVED.format(value=value))])
    (root / "solutions").mkdir(exist_ok=True)
    nbformat.write(nb, root / "solutions" / name)


def _type_answer(path: Path) -> bytes:
    """Edit the exercise cell as a student would; the file's new bytes."""
    nb = nbformat.read(path, as_version=4)
    nb.cells[-1].source = ANSWER
    nbformat.write(nb, path)
    return path.read_bytes()


@pytest.fixture
def course(tmp_path):
    """A course checkout with two notebooks generated into notebooks/ and copied into work/."""
    _write_solution(tmp_path, "a.ipynb")
    _write_solution(tmp_path, "b.ipynb")
    assert generate(tmp_path) == 0
    sync_work(tmp_path / "notebooks", tmp_path / "work")
    return tmp_path


def test_the_copy_step_copies_what_is_missing_and_never_overwrites(course):
    notebooks, work = course / "notebooks", course / "work"
    assert sorted(p.name for p in work.glob("*.ipynb")) == ["a.ipynb", "b.ipynb"]
    mine = _type_answer(work / "a.ipynb")
    (work / "b.ipynb").unlink()
    sync = sync_work(notebooks, work)
    assert sync.copied == ["b.ipynb"] and not sync.older and not sync.unrecorded
    assert (work / "a.ipynb").read_bytes() == mine
    assert (work / "b.ipynb").read_bytes() == (notebooks / "b.ipynb").read_bytes()
    assert "up to date" in describe(sync_work(notebooks, work), notebooks, work)


def test_make_student_refuses_to_overwrite_an_edited_notebook(course, capsys):
    target = course / "notebooks" / "a.ipynb"
    typed = _type_answer(target)  # answers typed into notebooks/, the old habit
    _write_solution(course, "a.ipynb", value=43)
    assert generate(course) == 1
    assert target.read_bytes() == typed
    out = capsys.readouterr().out
    assert "refusing to overwrite notebooks/a.ipynb" in out and "FORCE=1" in out
    assert generate(course, force=True) == 0
    assert "answer = 41" not in target.read_text() and generate(course, check=True) == 0


def test_make_student_regenerates_what_nobody_edited(course):
    _write_solution(course, "b.ipynb", value=43, intro="x = 2")
    assert generate(course) == 0
    assert "x = 2" in (course / "notebooks" / "b.ipynb").read_text()
    recorded = json.loads((course / "notebooks" / MANIFEST).read_text())["notebooks"]
    assert sorted(recorded) == ["a.ipynb", "b.ipynb"] and generate(course, check=True) == 0


def test_an_edited_copy_survives_an_update_of_solutions(course):
    notebooks, work = course / "notebooks", course / "work"
    mine = _type_answer(work / "a.ipynb")
    _write_solution(course, "a.ipynb", intro="x = 2")  # the course changes both notebooks
    _write_solution(course, "b.ipynb", intro="x = 2")
    _write_solution(course, "c.ipynb")  # and adds one
    assert generate(course) == 0  # notebooks/ was not edited: no refusal
    sync = sync_work(notebooks, work)
    assert (work / "a.ipynb").read_bytes() == mine
    assert "x = 1" in (work / "b.ipynb").read_text()  # never overwritten, even unchanged
    assert sync.copied == ["c.ipynb"] and sync.older == ["a.ipynb", "b.ipynb"]
    text = describe(sync, notebooks, work)
    assert "work/a.ipynb is older than the course's notebooks/a.ipynb" in text
    assert "rename yours to keep your answers" in text
    assert "work/b.ipynb is older" in text and "you have not changed it: delete it" in text
    (work / "a.ipynb").rename(work / "a-mine.ipynb")  # what the message advises
    sync = sync_work(notebooks, work)
    assert sync.copied == ["a.ipynb"] and sync.older == ["b.ipynb"]
    assert (work / "a-mine.ipynb").read_bytes() == mine


def test_a_copy_without_a_record_is_kept_and_reported_once(course):
    notebooks, work = course / "notebooks", course / "work"
    mine = _type_answer(work / "a.ipynb")
    (work / RECORD).write_text("{not json")
    sync = sync_work(notebooks, work)
    assert sync.unrecorded == ["a.ipynb"] and "could not be read" in sync.warnings[0]
    assert "no record of which version" in describe(sync, notebooks, work)
    assert (work / "a.ipynb").read_bytes() == mine
    assert not sync_work(notebooks, work).unrecorded


def test_bad_folders_are_clear_errors(tmp_path, capsys):
    with pytest.raises(ValueError, match="holds no notebooks. Fix: run this from the course"):
        sync_work(tmp_path / "nope", tmp_path / "work")
    (tmp_path / "course").mkdir()
    (tmp_path / "course" / "a.ipynb").write_text("{}")
    (tmp_path / "work").write_text("a file")
    assert main(["--course", str(tmp_path / "course"), "--work", str(tmp_path / "work")]) == 2
    assert "is a file, not a folder. Fix: rename it" in capsys.readouterr().err


def test_a_broken_manifest_says_how_to_restore_it(course):
    (course / "notebooks" / MANIFEST).write_text("[]")
    with pytest.raises(ValueError, match=r"not a make_student record .*git checkout notebooks/"):
        generate(course)


def test_make_lab_copies_into_work_and_opens_it():
    """`make lab` runs the copy step before JupyterLab, which opens work/; git ignores work/."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    lines = subprocess.run(["make", "-n", "lab"], cwd=ROOT, capture_output=True, text=True,
                           env=env, check=True).stdout.splitlines()
    sync = next(i for i, line in enumerate(lines) if "tools/student_work.py" in line)
    lab = next(i for i, line in enumerate(lines) if "jupyter lab" in line)
    assert sync < lab and "--notebook-dir=work" in lines[lab]
    forced = subprocess.run(["make", "-n", "student", "FORCE=1"], cwd=ROOT, capture_output=True,
                            text=True, env=env, check=True).stdout
    assert "make_student.py --force" in forced
    assert "work/" in (ROOT / ".gitignore").read_text().splitlines()
