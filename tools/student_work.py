"""Copy the course notebooks into work/, where students type; never overwrite a student's copy.

`make lab` runs this before JupyterLab opens work/ (git ignores it, so a `git pull` of course
updates never meets a student's answers). A notebook missing from work/ is copied from
notebooks/; a copy already there is never touched. work/.course-copies.json records the
SHA-256 of the course notebook each copy was made from, so when the course's version has
changed since, the student is told which copies are older and how to get the new version.

    python tools/student_work.py    # notebooks/ -> work/ (make lab runs it)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORD = ".course-copies.json"  # in work/: {notebook: SHA-256 of the course version copied}


@dataclass
class WorkSync:
    """What one sync did and found; every list holds notebook names."""

    copied: list[str] = field(default_factory=list)  # were missing from work/, copied now
    older: list[str] = field(default_factory=list)  # the course's version changed since the copy
    unrecorded: list[str] = field(default_factory=list)  # differ, and no record of their source
    unchanged: list[str] = field(default_factory=list)  # of `older`: still as copied
    warnings: list[str] = field(default_factory=list)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_record(work: Path, sync: WorkSync) -> dict[str, str]:
    """The copy record; an unreadable one is a warning, never a reason to overwrite."""
    path = work / RECORD
    if not path.exists():
        return {}
    try:
        return {str(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (ValueError, AttributeError) as error:
        sync.warnings.append(f"{path} could not be read ({error}); it is rebuilt, and no "
                             "copy in work/ is changed")
        return {}


def _write_record(work: Path, record: dict[str, str]) -> None:
    tmp = work / f"{RECORD}.writing"
    tmp.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n", encoding="utf-8")
    tmp.replace(work / RECORD)


def _copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.writing")
    tmp.write_bytes(source.read_bytes())
    tmp.replace(target)  # one move: a crash leaves no half notebook under the student's name


def _check_folders(course: Path, work: Path) -> None:
    if not course.is_dir() or not any(course.glob("*.ipynb")):
        raise ValueError(f"{course} holds no notebooks. Fix: run this from the course checkout "
                         "(make lab does), or pass --course with the folder of the notebooks")
    if work.exists() and not work.is_dir():
        raise ValueError(f"{work} is a file, not a folder. Fix: rename it (your notebooks go "
                         "in a folder of that name), then run make lab again")


def sync_work(course: Path, work: Path) -> WorkSync:
    """Copy every course notebook missing from `work`; report the copies the course has updated."""
    _check_folders(course, work)
    work.mkdir(parents=True, exist_ok=True)
    sync = WorkSync()
    record = read_record(work, sync)
    for source in sorted(course.glob("*.ipynb")):
        name, target, course_hash = source.name, work / source.name, _sha256(source)
        if not target.exists():
            _copy(source, target)
            record[name] = course_hash
            sync.copied.append(name)
        elif _sha256(target) == course_hash:
            record[name] = course_hash
        elif name not in record:
            record[name] = course_hash  # said once; from now on changes of the course count
            sync.unrecorded.append(name)
        elif record[name] != course_hash:
            sync.older.append(name)
            if _sha256(target) == record[name]:
                sync.unchanged.append(name)
    _write_record(work, record)
    return sync


def describe(sync: WorkSync, course: Path, work: Path) -> str:
    """What a student reads after `make lab`'s sync."""
    lines = list(sync.warnings)
    if sync.copied:
        lines.append(f"copied into {work.name}/: {', '.join(sync.copied)}")
    for name in sync.older:
        how = ("you have not changed it: delete it" if name in sync.unchanged
               else "compare the two, or rename yours to keep your answers")
        lines.append(f"{work.name}/{name} is older than the course's {course.name}/{name}; "
                     f"to get the new version, {how} and run make lab again")
    for name in sync.unrecorded:
        lines.append(f"{work.name}/{name} differs from {course.name}/{name} and there is no "
                     "record of which version it was copied from: compare them if you need "
                     "the course's changes")
    if not lines:
        lines.append(f"{work.name}/ is up to date with the course")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--course", type=Path, default=ROOT / "notebooks",
                        help="the course's student notebooks (default: notebooks/)")
    parser.add_argument("--work", type=Path, default=ROOT / "work",
                        help="the student's folder (default: work/)")
    args = parser.parse_args(argv)
    try:
        sync = sync_work(args.course, args.work)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(describe(sync, args.course, args.work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
