"""The one atomic writer: a crash leaves the old content (or nothing), never half of it."""

import pytest

from mclab.files import atomic_path, write_json_atomic, write_text_atomic


def test_file_written_whole_and_no_temp_left(tmp_path):
    target = tmp_path / "sub" / "row.json"
    write_json_atomic(target, {"a": 1})
    write_text_atomic(tmp_path / "t.md", "hello")
    assert target.read_text().strip().startswith("{") and (tmp_path / "t.md").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["row.json", "sub", "t.md"]


def test_crash_keeps_the_old_file(tmp_path):
    target = tmp_path / "row.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["row.json"]


def test_folder_replaces_an_existing_folder(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "stale.bin").write_text("x")
    with atomic_path(target, folder=True) as tmp:
        (tmp / "weights.bin").write_text("new")
    assert [p.name for p in target.iterdir()] == ["weights.bin"]
    with pytest.raises(ValueError):
        with atomic_path(target, folder=True) as tmp:
            (tmp / "other.bin").write_text("half")
            raise ValueError
    assert [p.name for p in target.iterdir()] == ["weights.bin"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
