"""Execute notebooks headless and record each one's wall time and kernel peak memory.

    python -m mclab measure-notebooks [solutions/00_foundation_model.ipynb ...]
        [--out FOLDER] [--executed runs/executed]

`python -m mclab report --notebooks` runs it over every notebook of the checkout after the
report. The kernels inherit the mode (MCLAB_QUICK) from the environment, like every command.

Peak memory is the kernel process's largest resident set size, sampled every 0.1 s
(with its child processes), so it is what a Binder session with 2 GB would see. Each row
also names the notebook's five slowest code cells (index among all cells, seconds): where
to look first when a notebook is over its budget, and keeps the whole profile, `cells`:
[index, seconds, peak MB while that cell ran] for every code cell. The load average before
and after is recorded too: a time taken while other processes shared the cores is not a
clean measurement.
Results are merged into the output JSON by notebook name, so runs can be split.
Needs nbclient and nbformat (the `test` extra, or JupyterLab), imported only by this module.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient

from .config import get_settings
from .files import write_text_atomic


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
        self.cell_peak = 0  # the largest sample since `start_cell`
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
                rss = sum(p.memory_info().rss for p in family)
                self.peak = max(self.peak, rss)
                self.cell_peak = max(self.cell_peak, rss)
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

    def start_cell(self):
        self.cell_peak = 0

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
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    # client.execute() would start (and clean up) a kernel of its own inside this one,
    # so run the cells one by one in the kernel we watch (nbclient's documented pattern).
    with client.setup_kernel():
        monitor.watch(client.km.provisioner.process.pid)
        try:
            for index, cell in enumerate(nb.cells):
                cell_start = time.perf_counter()
                monitor.start_cell()
                client.execute_cell(cell, index)
                if cell.cell_type == "code":
                    cells.append((index, round(time.perf_counter() - cell_start, 1),
                                  round(monitor.cell_peak / 2**20)))
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
            "slowest_cells": {f"cell {i}": s for i, s, _ in slowest},
            "cells": [list(c) for c in cells],
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "mode": get_settings().mode}


def measure_notebooks(notebooks: list[Path], out: Path, executed: Path | None = None) -> int:
    """Run each notebook, merge its row into `out` (a JSON file) at once; 1 if any failed."""
    out = Path(out)
    results = json.loads(out.read_text()) if out.exists() else {}
    failed = []
    for path in map(Path, notebooks):
        print(f"running {path} ...", flush=True)
        try:
            row = measure(path, executed=executed)
        except Exception as err:  # record it and go on: one broken notebook hides no others
            row = {"error": f"{type(err).__name__}: {str(err).strip().splitlines()[-1][:300]}"}
            failed.append(path.name)
        row.update(machine=f"{platform.machine()}, {os.cpu_count()} cores",
                   date=time.strftime("%Y-%m-%d"))
        results[path.name] = row
        print(f"  {row.get('error') or str(row['seconds']) + ' s, peak ' + str(row['peak_rss_mb']) + ' MB'}",
              flush=True)
        write_text_atomic(out, json.dumps(results, indent=1, sort_keys=True))
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0
