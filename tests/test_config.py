"""Where mclab finds its data and writes its results, in a checkout and as an installed wheel."""

import fnmatch
import shutil
import tomllib
from pathlib import Path

import pytest

import mclab
from mclab import config
from mclab.data import DataError, check_data_dir, load_scenario

ROOT = Path(__file__).resolve().parent.parent


def test_data_resolves_to_the_package_resource(monkeypatch):
    monkeypatch.delenv("MCLAB_DATA", raising=False)
    settings = config.get_settings()
    assert settings.data_dir == Path(mclab.__file__).resolve().parent / "course_data"
    assert settings.data_source == "mclab"
    assert len(load_scenario("company")["eval_mc"]) >= 60


def test_mclab_data_overrides_the_shipped_data(tmp_path, monkeypatch):
    copy = tmp_path / "data"
    shutil.copytree(config.shipped_data_dir(), copy)
    eval_mc = copy / "company" / "eval_mc.jsonl"
    eval_mc.write_text("".join(eval_mc.read_text().splitlines(keepends=True)[:3]))
    monkeypatch.setenv("MCLAB_DATA", str(copy))
    assert config.get_settings().data_dir == copy
    assert len(load_scenario("company")["eval_mc"]) == 3


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "nope", r"MCLAB_DATA=\S+nope is not a folder"),
    (lambda tmp: (tmp / "company").mkdir() or tmp, r"MCLAB_DATA=\S+ has no medical/ folder"),
])
def test_a_bad_mclab_data_says_which_variable_to_fix(tmp_path, monkeypatch, make, message):
    monkeypatch.setenv("MCLAB_DATA", str(make(tmp_path)))
    for check in (check_data_dir, lambda: load_scenario("medical")):
        with pytest.raises(DataError, match=message) as err:
            check()
        assert "unset MCLAB_DATA" in str(err.value)
        assert "company/, medical/, local/" in str(err.value)


def test_a_checkout_keeps_runs_and_reports_beside_the_package(monkeypatch):
    monkeypatch.delenv("MCLAB_RUNS", raising=False)
    assert config.checkout_root() == ROOT
    settings = config.get_settings()
    assert (settings.runs_dir, settings.reports_dir) == (ROOT / "runs", ROOT / "reports")
    assert config.committed_report() == ROOT / "reports" / "comparison.json"


def test_an_installed_wheel_writes_under_the_user_data_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "checkout_root", lambda: None)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("MCLAB_RUNS", raising=False)
    settings = config.get_settings()
    assert settings.runs_dir == tmp_path / "mclab" / "runs"
    assert settings.reports_dir == tmp_path / "mclab" / "reports"
    # No full report written yet: the committed one that ships in the wheel.
    shipped = Path(mclab.__file__).resolve().parent / "course_reports" / "comparison.json"
    assert config.committed_report() == shipped
    written = settings.reports_dir / "comparison.json"
    written.parent.mkdir(parents=True)
    written.write_text("{}")
    assert config.committed_report() == written
    monkeypatch.setenv("MCLAB_RUNS", str(tmp_path / "elsewhere"))
    assert config.get_settings().runs_dir == tmp_path / "elsewhere"


def _shipped_by_pyproject(relative: Path, setuptools: dict) -> bool:
    package = ".".join(("mclab",) + relative.parent.parts)
    return package in setuptools["packages"] and any(
        fnmatch.fnmatch(relative.name, pattern)
        for pattern in setuptools["package-data"].get(package, []))


def test_the_wheel_carries_every_data_file_and_the_committed_report():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    data = config.shipped_data_dir()
    files = [p.relative_to(data.parent) for p in data.rglob("*") if p.is_file()]
    assert len(files) > 10
    for relative in files:
        assert _shipped_by_pyproject(relative, setuptools), relative
    assert setuptools["package-dir"]["mclab.course_reports"] == "reports"
    assert _shipped_by_pyproject(Path("course_reports/comparison.json"), setuptools)
