"""Every method side by side: `python -m mclab report` (and `make report`).

Each method (`mclab.methods`, settings from `mclab.recipes`) runs in its own child process
(`python -m mclab report --one NAME`) and is scored on the same evals
(`mclab.scorecard.score_model`). A child's peak memory is the operating system's count for
that process alone (`wait4`), so one method's leftovers never inflate the next one's number.
Finished rows are kept in `<out>/rows/NAME.json`; a rerun skips them unless asked
(`--force`), so the report resumes. `mclab.report_table` writes and reads the table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .config import get_settings
from .device import choose_device, is_main_process, num_processes
from .files import write_json_atomic
from .seeds import is_trained, seed_path
from .measure import maxrss_mb
from .methods import METHODS, Method
from .models import model_folder_name, model_name
from .report_table import (ENSEMBLE, ENSEMBLE_NAME, REFERENCES, ReportError,  # noqa: F401
                           frame, load_report, load_row, rewrite_with_new_locality, slug,
                           write_reference_rows, write_report)

NAMES = [m.name for m in METHODS] + [ENSEMBLE_NAME]


def method(name: str) -> Method:
    for m in METHODS:
        if m.name == name or slug(m.name) == name:
            return m
    raise ReportError(f"unknown method {name!r}; choose from: {', '.join(NAMES)}")


# --------------------------------------------------------------------------- running

def default_out() -> Path:
    """reports/ for full mode; quick runs go under the runs folder, never over the report.

    Another foundation model (MCLAB_MODEL) gets its own folder below, models/<name>: its rows
    neither overwrite the course's SmolLM2-135M rows nor are skipped as done because of them.
    """
    settings = get_settings()
    out = settings.runs_dir / "report-quick" if settings.quick else settings.reports_dir
    other = model_folder_name()
    return out / "models" / other if other else out


def run_one(name: str, out: Path, add: str | None = None, as_seed: bool = False) -> dict:
    """Run one method in this process and write its row (called in the child).

    With `add` (a scorecard part), the method runs again scoring only that part and the
    company multiple choice; the new part's fields join the existing row, whose other numbers
    stay as they were. The company answers must come out as before (training is seeded), and
    the row records whether they did (`added_parts`). With `as_seed`, the row is one more
    training seed's (MCLAB_SEED) and goes to `rows/seeds/` (`mclab.seeds`).
    """
    from .config import setup

    m = method(name)
    setup()
    start = time.perf_counter()
    from .methods import Context

    if add is None:
        row = m.run(Context())
        row = {"method": m.name, "family": m.family, "trained_on": m.trained_on, **row,
               "seconds": time.perf_counter() - start, "mode": get_settings().mode,
               "seed": get_settings().seed, "model": model_name(), **_where_and_memory()}
    else:
        row = load_row(out, m.name)
        if row is None:
            raise ReportError(f"no {get_settings().mode}-mode row for {m.name!r} to add "
                              f"{add!r} to; run the method first")
        new = m.run(Context(parts=("company", add)))
        same = new.get("company_answers") == row.get("company_answers") and \
            np.allclose(new.get("company_probs", []), row.get("company_probs", []), atol=1e-3)
        fields = ADDED_FIELDS[add]
        record = {"company_reproduced": bool(same), "seconds": time.perf_counter() - start}
        if add == "medical" and row.get("medical_perplexity") is not None:
            # the per-text parts must give the perplexity the row already has
            record["medical_perplexity_reproduced"] = bool(np.isclose(
                new["medical_perplexity"], row["medical_perplexity"], rtol=1e-4))
        row = {**row, **{k: v for k, v in new.items() if k in fields},
               "added_parts": {**row.get("added_parts", {}), add: record}}
    if is_main_process():  # under `accelerate launch` every process trains; one writes
        path = (seed_path(out, slug(m.name), row["seed"]) if as_seed
                else Path(out) / "rows" / f"{slug(m.name)}.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, row)
    return row


def _where_and_memory() -> dict:
    """Where the method ran, and this process's peak memory: what a row run by `accelerate
    launch` keeps (run by `run_report`, the parent's count of the child replaces it)."""
    import resource

    device = choose_device().device
    where = {"device": device.type, "processes": num_processes(),
             "peak_memory_mb": maxrss_mb(resource.getrusage(resource.RUSAGE_SELF))}
    if device.type == "cuda":
        import torch

        where["gpu_peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return where


# the row fields each part writes (what `--add PART` merges into an existing row)
ADDED_FIELDS = {"answers": ("company_answer_match", "company_answer_f1", "false_abstain",
                            "abstain_unanswerable", "answer_texts", "answer_match_items",
                            "answer_f1_items", "answer_abstained", "unanswerable_texts",
                            "unanswerable_abstained",
                            "rag_answers", "answers_supported", "rag_unanswerable_reasons"),
                "medical": ("medical_knowledge", "medical_probs", "medical_answers",
                            "medical_nll", "medical_tokens")}


def _child(name: str, out: Path, add: str | None = None,
           seed: int | None = None) -> tuple[int, float]:
    """Run a method in a child process; its exit code and peak resident memory (MB). With
    `seed`, the child trains with that MCLAB_SEED and writes an extra seed's row."""
    extra = ["--add", add] if add else []
    env = None
    if seed is not None:
        extra.append("--as-seed")
        env = {**os.environ, "MCLAB_SEED": str(seed)}
    proc = subprocess.Popen([sys.executable, "-m", "mclab", "report", "--one", name,
                             "--out", str(out), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    # Relay the child's output through this process, so in a notebook it shows in the cell
    # (a child writing to the kernel's own stdout would print to the server's terminal).
    while chunk := proc.stdout.read1(4096):
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, maxrss_mb(usage)


def check_out(out: Path) -> Path:
    out = Path(out)
    try:
        (out / "rows").mkdir(parents=True, exist_ok=True)
        probe = out / "rows" / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ReportError(f"cannot write the report to {out} ({err.strerror}); pass --out "
                          "with a writable folder") from None
    return out


def run_report(names=None, out=None, force: bool = False, progress: bool = True,
               add: str | None = None, seeds: int = 1) -> dict:
    """Run the methods not yet done (all of `names`, with `force`) and write the report; a
    run of every method also writes the locality score's reference rows if missing. With
    `add`, score one more part for the rows that lack it (`run_one`). With `seeds` > 1,
    every trained row also runs with seeds + 1 ... + seeds - 1 (`mclab.seeds`)."""
    if seeds < 1:
        raise ReportError(f"--seeds must be 1 or more, got {seeds}")
    every = not names
    names = [method(n).name for n in (names or [m.name for m in METHODS])]
    out = check_out(out or default_out())
    from tqdm.auto import tqdm

    failed = []
    bar = tqdm(names, desc="methods", disable=not progress)
    for name in bar:
        bar.set_postfix_str(name)
        row = load_row(out, name) if add or not force else None
        if add is not None:
            if row is None or (add in row.get("added_parts", {}) and not force):
                continue  # nothing to add to, or added already
            code, _ = _child(name, out, add)  # the row keeps the first run's peak memory
            if code != 0:
                failed.append(f"{name!r} (exit code {code})")
            continue
        if row is not None:
            continue
        if force:
            (out / "rows" / f"{slug(name)}.json").unlink(missing_ok=True)
        code, peak_mb = _child(name, out)
        row = load_row(out, name)
        if code != 0 or row is None:
            failed.append(f"{name!r} (exit code {code})")
            continue  # the others still run; the report is written with what finished
        row["peak_memory_mb"] = peak_mb
        write_json_atomic(out / "rows" / f"{slug(name)}.json", row)
    if seeds > 1 and add is None:
        failed += run_seeds(names, out, seeds, force, progress)
    if every and not all(load_row(out, name) for name in REFERENCES):
        write_reference_rows(out)  # the locality score's bounds: seconds, no model
    result = write_report(out)
    if failed:
        raise ReportError(f"failed: {', '.join(failed)}; their output is above. Rerun one "
                          "alone with `python -m mclab report --only NAME`")
    return result


def run_seeds(names, out: Path, seeds: int, force: bool = False,
              progress: bool = True) -> list[str]:
    """The extra seeds of every trained row among `names` (resumable); what failed."""
    from tqdm.auto import tqdm

    first = get_settings().seed
    todo = []
    for name in names:
        row = load_row(out, name)
        if row is None or not is_trained(row):
            continue  # prompts and retrieval are deterministic: one run is all of them
        for seed in range(first + 1, first + seeds):
            path = seed_path(out, slug(name), seed)
            if force or not path.exists():
                todo.append((name, seed))
    failed = []
    for name, seed in tqdm(todo, desc="extra seeds", disable=not progress):
        code, peak_mb = _child(name, out, seed=seed)
        path = seed_path(out, slug(name), seed)
        if code != 0 or not path.exists():
            failed.append(f"{name!r} seed {seed} (exit code {code})")
            continue
        row = json.loads(path.read_text())
        row["peak_memory_mb"] = peak_mb
        write_json_atomic(path, row)
    return failed


def run_timing(out: Path, progress: bool = True) -> dict:
    """The timing pass (`mclab.timing`) over every method that has a row, in this process
    and after the rows; writes <out>/timing.json, then the report again with its times."""
    from .timing import timing_pass

    out = check_out(out)
    names = [m.name for m in METHODS if load_row(out, m.name)]
    if not names:
        raise ReportError(f"no rows in {out} to time; run the methods first")
    write_json_atomic(out / "timing.json", timing_pass(names, progress=progress))
    return write_report(out)


def clean(out: Path) -> None:
    shutil.rmtree(Path(out) / "rows", ignore_errors=True)
