"""One timing pass for every method: the report's `ms_per_answer`.

A row's own run times its answers too, but while it trains and scores, on a machine that
other work may share: those numbers are not comparable. This pass runs after the rows, on
its own (`python -m mclab report --timing`):

- every method answers the **same** `ITEMS` company questions (evenly spaced over the
  held-out set), in the form it serves them (`methods.Method.serving`: its prompt, its
  retrieval, its adapter unmerged, as the report scores it); building that form is not timed,
  the retrieval or example search of each answer is;
- one warm-up round over every method, then `REPEATS` rounds, **interleaved** (method after
  method, round after round), so a slow minute of the machine lands on every method alike;
- each method's number is the median of its rounds, with their min and max;
- during every timed call the CPU time that *other* processes used is measured (all busy
  time of the machine minus this process's own, `psutil`); if it exceeds
  `MAX_OTHER_CORES` cores in any round of a method, that method's number is null, with the
  reason. So is the number of a method when the machine's hypervisor took (steal time) as
  much.

An adapter's work per answer depends on its shapes, not on its trained values, and a
full-weight training changes no shape at all: those rows are timed as the base model (see
`methods.Method.serve`). So "base" and "full SFT" time the same computation, which is what
they are.
"""

from __future__ import annotations

import gc
import os
import platform
import statistics
import time
from dataclasses import dataclass

import psutil

ITEMS = 24  # company questions every method answers
REPEATS = 3  # timed rounds after the warm-up
MAX_OTHER_CORES = 0.5  # above this, a round was shared with other work: no number


@dataclass
class Window:
    """What happened on the machine while one call ran."""

    seconds: float = 0.0
    other_cores: float = 0.0  # CPU used by other processes, in cores (busy - own) / wall
    steal_cores: float = 0.0  # CPU the hypervisor took from this machine, in cores


class Meter:
    """`with Meter() as m: ...` measures the wall time and the other processes' CPU."""

    def __enter__(self):
        self._own = psutil.Process()
        self._cpu0, self._own0 = psutil.cpu_times(), self._own_cpu()
        self._t0 = time.perf_counter()
        self.window = Window()
        return self

    def _own_cpu(self) -> float:
        t = self._own.cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def __exit__(self, *exc):
        wall = time.perf_counter() - self._t0
        cpu1, own1 = psutil.cpu_times(), self._own_cpu()
        idle = ("idle", "iowait", "steal", "guest", "guest_nice")
        busy = sum(getattr(cpu1, f) - getattr(self._cpu0, f) for f in cpu1._fields
                   if f not in idle)
        steal = getattr(cpu1, "steal", 0.0) - getattr(self._cpu0, "steal", 0.0)
        self.window = Window(wall, max(0.0, busy - (own1 - self._own0)) / wall if wall else 0.0,
                             steal / wall if wall else 0.0)
        return False


def summarize(rounds: list[dict], max_other: float = MAX_OTHER_CORES) -> dict:
    """One method's rounds -> its median ms with min and max, or null with the reason."""
    ms = [r["ms"] for r in rounds]
    worst_other = max(r["other_cores"] for r in rounds)
    worst_steal = max(r["steal_cores"] for r in rounds)
    row = {"rounds": rounds, "median_ms": statistics.median(ms), "min_ms": min(ms),
           "max_ms": max(ms), "max_other_cores": worst_other, "max_steal_cores": worst_steal}
    if worst_other > max_other:
        why = f"other processes used {worst_other:.2f} cores in a timed round"
    elif worst_steal > max_other:
        why = f"the hypervisor took {worst_steal:.2f} cores in a timed round (steal time)"
    else:
        return {**row, "ms_per_answer": row["median_ms"], "why_null": None}
    return {**row, "ms_per_answer": None, "why_null": f"{why} (more than {max_other}): "
            "not a clean timing; rerun `python -m mclab report --timing` on a quiet machine"}


def time_once(method, ctx, sets) -> dict:
    """Build the method's serving form (not timed), then time its answers to `sets`."""
    from .scorecard import score_model

    serving = method.serving(ctx)
    with Meter() as meter:
        card = score_model(serving.model, serving.tokenizer, ctx.embedder, sets,
                           parts=("company",), **serving.score_kwargs)
    del serving
    gc.collect()
    return {"ms": card.ms_per_answer, "other_cores": round(meter.window.other_cores, 3),
            "steal_cores": round(meter.window.steal_cores, 3)}


def timing_pass(names: list[str] | None = None, items: int = ITEMS, repeats: int = REPEATS,
                max_other: float = MAX_OTHER_CORES, progress: bool = True) -> dict:
    """Time every method (or `names`) as the module says; the record `report` keeps."""
    from .config import get_settings
    from .data import subset
    from .methods import METHODS, Context

    if repeats < 1 or items < 1:
        raise ValueError(f"need at least 1 round and 1 item (got {repeats}, {items})")
    chosen = [m for m in METHODS if names is None or m.name in names]
    unknown = set(names or ()) - {m.name for m in chosen}
    if unknown:
        raise ValueError(f"no method named {sorted(unknown)}; the methods: "
                         f"{[m.name for m in METHODS]}")
    ctx = Context(parts=("company",))
    sets = {**ctx.sets, "company_mc": subset(ctx.sets["company_mc"], items)}
    rounds: dict[str, list[dict]] = {m.name: [] for m in chosen}
    load_before = os.getloadavg()
    start = time.perf_counter()
    for r in range(repeats + 1):  # round 0 warms up every method and is not kept
        for method in chosen:
            if progress:
                print(f"{'warm-up' if r == 0 else f'round {r}'}: {method.name}", flush=True)
            result = time_once(method, ctx, sets)
            if r:
                rounds[method.name].append(result)
    settings = get_settings()
    return {"mode": settings.mode, "date": time.strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "threads": settings.threads, "items": len(sets["company_mc"]), "repeats": repeats,
            "warm_up_rounds": 1, "max_other_cores": max_other,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "seconds": round(time.perf_counter() - start, 1),
            "methods": {name: summarize(rs, max_other) for name, rs in rounds.items()}}


def apply_timing(rows: list[dict], timing: dict | None) -> list[dict]:
    """The report's rows with `ms_per_answer` from the timing pass (median; null where the
    pass was not clean or did not time the method) and its `ms_per_answer_range`. Without
    a timing record (a quick run), the rows keep the times of their own runs."""
    if timing is None:
        return rows
    timed = timing.get("methods", {})
    out = []
    for row in rows:
        t = timed.get(row["method"])
        out.append({**row, "ms_per_answer": t and t["ms_per_answer"],
                    "ms_per_answer_range": [t["min_ms"], t["max_ms"]] if t else None,
                    "ms_per_answer_why_null": (t["why_null"] if t else
                                               "not in the timing pass (reports/timing.json)")})
    return out
