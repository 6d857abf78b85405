"""Prove the Colab install path on this machine: the setup cell, then notebook 00 in full mode.

A Colab runtime already holds its own torch, pandas and ipykernel, at versions other than the
lock's. This script builds such an environment (a fresh virtual environment holding `--base`,
by default Colab-like versions that differ from requirements.lock), clones the committed course
into a temporary folder, and executes solutions/00_foundation_model.ipynb in that environment's
kernel with `COLAB_RELEASE_TAG` set, so the notebook's own first cell takes its Colab branch and
installs the course exactly as it would on Colab, only from the local clone
(`MCLAB_COLAB_SOURCE=git+file://...`) instead of the repository's address. The rest of the
notebook then runs in full mode (no MCLAB_QUICK) on one thread, offline (HF_HUB_OFFLINE=1: the
model comes from the PyPI package and is converted into a fresh cache, as on a first run).

It takes minutes (a large torch install, then the notebook), so `make test` does not run it.

    python tools/colab_proof.py                    # venv in /tmp/mclab-colab-proof, reused
    python tools/colab_proof.py --venv DIR --base "torch==2.13.0 pandas==2.2.2 ipykernel==6.17.1"

Writes reports/colab_proof.json: the versions before and after the setup cell, what the cell
printed, the timings and whether every cell ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = "solutions/00_foundation_model.ipynb"
# Colab's versions in late 2025 for pip, ipykernel and pandas (the newest that pyproject's
# ranges allow are the lock's own, so they would not show that the cell keeps what it finds;
# pip 23.2 rejects `name @ git+file://` addresses, which pip 24 accepts); torch 2.14.1 is the
# newest release this machine's pip may install, and is not the lock's.
BASE = "pip==24.1.2 torch==2.14.1 pandas==2.2.2 ipykernel==6.17.1"
WATCH = ["torch", "pandas", "numpy", "ipykernel", "transformers", "peft", "trl", "datasets",
         "accelerate", "sentence-transformers", "ipywidgets", "matplotlib", "mclab"]


def run(command: list[str], **kwargs) -> str:
    print("$", " ".join(command), flush=True)
    return subprocess.run(command, check=True, text=True, capture_output=True, **kwargs).stdout


def freeze(python: Path) -> dict[str, str]:
    lines = run([str(python), "-m", "pip", "list", "--format=json"])
    return {p["name"].lower(): p["version"] for p in json.loads(lines)}


def make_venv(venv: Path, base: str) -> float:
    """Create venv with the base packages unless it exists; the seconds it took."""
    start = time.perf_counter()
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "--quiet", *base.split()])
    elif "mclab" in freeze(python):
        raise SystemExit(f"{venv} already holds mclab: remove it (rm -r {venv}) for a fresh proof")
    return time.perf_counter() - start


def kernelspec(jupyter_path: Path, python: Path) -> str:
    name = "mclab-colab-proof"
    folder = jupyter_path / "kernels" / name
    folder.mkdir(parents=True)
    spec = {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Colab-like proof", "language": "python"}
    (folder / "kernel.json").write_text(json.dumps(spec))
    return name


def execute(clone: Path, work: Path, kernel: str) -> tuple[nbformat.NotebookNode, str | None]:
    nb = nbformat.read(clone / NOTEBOOK, as_version=4)
    client = NotebookClient(nb, kernel_name=kernel, timeout=3600, record_timing=True,
                            resources={"metadata": {"path": str(work)}})
    try:
        client.execute()
        return nb, None
    except Exception as error:  # a failing cell is the result this script reports
        return nb, f"{type(error).__name__}: {str(error)[-2000:]}"


def cell_seconds(cell) -> float | None:
    from datetime import datetime

    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return None
    return round((end - start).total_seconds(), 1)


def text_output(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("name") == "stdout")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mclab-colab-proof"))
    parser.add_argument("--base", default=BASE, help="what the runtime holds before the cell")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "colab_proof.json")
    parser.add_argument("--executed", type=Path, default=Path("/tmp/mclab-colab-proof-00.ipynb"),
                        help="where the executed notebook goes (outputs kept, not committed)")
    args = parser.parse_args(argv)
    if run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"]).strip():
        print("note: the proof installs the last commit; uncommitted changes are not in it")
    venv_seconds = make_venv(args.venv, args.base)
    python = args.venv / "bin" / "python"
    before = freeze(python)
    with tempfile.TemporaryDirectory(prefix="mclab-colab-") as tmp:
        tmp = Path(tmp)
        clone = tmp / "clone"
        run(["git", "clone", "--quiet", str(ROOT), str(clone)])
        commit = run(["git", "-C", str(clone), "rev-parse", "HEAD"]).strip()
        (tmp / "content").mkdir()  # the notebook's working folder, as Colab's /content
        env = {"COLAB_RELEASE_TAG": "mclab-colab-proof",
               "MCLAB_COLAB_SOURCE": f"git+file://{clone}",
               "MCLAB_THREADS": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
               "MCLAB_CACHE": str(tmp / "cache"), "MCLAB_RUNS": str(tmp / "runs"),
               "JUPYTER_PATH": str(tmp / "jupyter")}
        for name in ("MCLAB_QUICK", "PYTHONPATH", "MCLAB_MODEL", "MCLAB_DEVICE", "VIRTUAL_ENV"):
            os.environ.pop(name, None)
        os.environ.update(env)
        kernel = kernelspec(tmp / "jupyter", python)
        start = time.perf_counter()
        nb, error = execute(clone, tmp / "content", kernel)
        seconds = time.perf_counter() - start
        nbformat.write(nb, args.executed)
    after = freeze(python)
    code = [c for c in nb.cells if c.cell_type == "code"]
    ran = sum(1 for c in code if c.get("execution_count") is not None)
    setup = code[0]
    record = {
        "about": "written by tools/colab_proof.py: the Colab setup cell run in a Colab-like "
                 "environment (COLAB_RELEASE_TAG set) from a local clone, then notebook 00 in "
                 "full mode, offline, on one thread",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit, "python": platform.python_version(), "notebook": NOTEBOOK,
        "base": args.base, "passed": error is None, "error": error,
        "code_cells": len(code), "code_cells_run": ran,
        "versions_before": {n: before.get(n, "-") for n in WATCH},
        "versions_after": {n: after.get(n, "-") for n in WATCH},
        "kept": sorted(n for n in before if after.get(n) == before[n]),
        "changed": {n: [before[n], after.get(n, "-")] for n in sorted(before)
                    if after.get(n) != before[n]},
        "added": len(set(after) - set(before)),
        "setup_cell_printed": text_output(setup),
        "seconds": {"base_venv": round(venv_seconds, 1), "setup_cell": cell_seconds(setup),
                    "notebook_after_setup": round(seconds - (cell_seconds(setup) or 0), 1),
                    "notebook_total": round(seconds, 1)},
        "load_average_at_end": os.getloadavg()[0],
    }
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: record[k] for k in ("passed", "error", "seconds", "changed")}, indent=1))
    print(f"wrote {args.out}")
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main())
