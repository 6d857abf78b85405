"""`make test` runs every notebook twice (notebooks/ and solutions/); each full-weight run
saves a ~520 MB model, about 7 GB in all. With MCLAB_TEST_CLEAN_RUNS=1 (set by `make test`)
each notebook's run folders are deleted once its last cell has run, so the suite needs
about 2 GB of free disk (notebook 03's four models) instead."""

import os
import shutil
from pathlib import Path


def pytest_runtest_teardown(item, nextitem):
    if os.environ.get("MCLAB_TEST_CLEAN_RUNS") != "1" or item.path.suffix != ".ipynb":
        return
    if nextitem is not None and nextitem.path == item.path:
        return
    runs = os.environ.get("MCLAB_RUNS")
    if runs:
        for entry in Path(runs).glob("*"):
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
