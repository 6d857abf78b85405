"""Execute notebooks headless and record each one's wall time and kernel peak memory.

    python tools/measure_notebooks.py solutions/00_foundation_model.ipynb [...]
        [--quick] [--out reports/notebooks.json] [--executed runs/executed]

Peak memory is the kernel process's largest resident set size, sampled every 0.1 s
(with its child processes), so it is what a Binder session with 2 GB would see. Each row
also names the notebook's five slowest code cells (index among all cells, seconds): where
to look first when a notebook is over its budget.
Results are merged into the output JSON by notebook name, so runs can be split.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient


class Stalled(RuntimeError):
    """The kernel sat idle while the client still waited for a cell (nbclient issue #312)."""


class PeakRSS:
    """Samples the kernel's memory; kills a kernel that has used no CPU for `stall_s` seconds.

    nbclient sometimes never sees the end of a cell that shows ipywidgets
    (jupyter/nbclient#312): the kernel is idle and the client waits forever. Every cell of
    these notebooks computes, so a kernel with no CPU time for minutes is that hang; killing
    it makes nbclient raise, and the notebook is run again.
    """

    def __init__(self, stall_s: float = 300):
        self.peak = 0
        self.stalled = False
        self._pid = None
        self._stall_s = stall_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def watch(self, pid: int):
        self._pid = pid
        self._thread.start()

    def _run(self):
        last_cpu, last_change = -1.0, time.monotonic()
        while not self._stop.is_set():
            try:
                proc = psutil.Process(self._pid)
                family = [proc, *proc.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in family))
                cpu = sum(sum(p.cpu_times()[:2]) for p in family)
                if cpu - last_cpu > 0.5:  # an idle kernel still ticks a few ms
                    last_cpu, last_change = cpu, time.monotonic()
                elif time.monotonic() - last_change > self._stall_s:
                    self.stalled = True
                    proc.kill()
                    return
            except psutil.Error:
                pass
            time.sleep(0.1)

    def stop(self):
        self._stop.set()


def measure(path: Path, timeout: int = 3600, executed: Path | None = None,
            tries: int = 2) -> dict:
    """`measure_once`, run again when nbclient hung (see `PeakRSS`)."""
    for attempt in range(1, tries + 1):
        try:
            return measure_once(path, timeout, executed)
        except Stalled:
            print(f"  kernel idle while nbclient waited (nbclient#312); try {attempt} of {tries}",
                  flush=True)
    raise Stalled(f"{path.name}: nbclient hung {tries} times")


def measure_once(path: Path, timeout: int = 3600, executed: Path | None = None) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    monitor = PeakRSS()
    cells = []
    start = time.perf_counter()
    # client.execute() would start (and clean up) a kernel of its own inside this one,
    # so run the cells one by one in the kernel we watch (nbclient's documented pattern).
    with client.setup_kernel():
        monitor.watch(client.km.provisioner.process.pid)
        try:
            for index, cell in enumerate(nb.cells):
                cell_start = time.perf_counter()
                client.execute_cell(cell, index)
                if cell.cell_type == "code":
                    cells.append((index, round(time.perf_counter() - cell_start, 1)))
        except Exception:
            if monitor.stalled:
                raise Stalled(path.name) from None
            raise
    seconds = time.perf_counter() - start
    monitor.stop()
    if executed is not None:  # the run with its outputs, to read the numbers it printed
        executed.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed / path.name)
    slowest = sorted(cells, key=lambda c: -c[1])[:5]
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(monitor.peak / 2**20),
            "slowest_cells": {f"cell {i}": s for i, s in slowest},
            "mode": "quick" if os.environ.get("MCLAB_QUICK") == "1" else "full"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--quick", action="store_true", help="set MCLAB_QUICK=1")
    parser.add_argument("--out", type=Path, default=Path("reports/notebooks.json"))
    parser.add_argument("--executed", type=Path, default=None,
                        help="also save each executed notebook (with outputs) in this folder")
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["MCLAB_QUICK"] = "1"
    else:
        os.environ.pop("MCLAB_QUICK", None)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    failed = []
    for path in args.notebooks:
        print(f"running {path} ...", flush=True)
        try:
            row = measure(path, executed=args.executed)
        except Exception as err:  # record it and go on: one broken notebook hides no others
            row = {"error": f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"}
            failed.append(path.name)
        row.update(machine=f"{platform.machine()}, {os.cpu_count()} cores",
                   date=time.strftime("%Y-%m-%d"))
        results[path.name] = row
        print(f"  {row.get('error') or str(row['seconds']) + ' s, peak ' + str(row['peak_rss_mb']) + ' MB'}",
              flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1, sort_keys=True))
        os.replace(tmp, args.out)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
