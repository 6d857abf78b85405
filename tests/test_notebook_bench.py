"""`python -m mclab measure-notebooks` and `report --notebooks` time notebooks from inside the
package (no tools/ script), and say what to do where there are no notebooks."""

import json
from pathlib import Path

import pytest

from mclab import __main__ as cli
from mclab import config, notebook_bench


@pytest.fixture
def fake_measure(monkeypatch):
    """Record which notebooks would run; each 'takes' 1.5 s and 100 MB."""
    seen = []

    def measure(path, executed=None):
        seen.append(Path(path))
        return {"seconds": 1.5, "peak_rss_mb": 100, "slowest_cells": {}, "mode": "quick"}

    monkeypatch.setattr(notebook_bench, "measure", measure)
    return seen


def test_measure_notebooks_merges_rows_into_notebooks_json(tmp_path, fake_measure):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "notebooks.json").write_text(json.dumps({"old.ipynb": {"seconds": 9}}))
    assert cli.main(["measure-notebooks", "a.ipynb", "b.ipynb", "--out", str(out)]) == 0
    rows = json.loads((out / "notebooks.json").read_text())
    assert set(rows) == {"old.ipynb", "a.ipynb", "b.ipynb"}
    assert rows["a.ipynb"]["seconds"] == 1.5 and "machine" in rows["a.ipynb"]
    assert fake_measure == [Path("a.ipynb"), Path("b.ipynb")]


def test_a_failing_notebook_is_recorded_and_the_rest_still_run(tmp_path, monkeypatch):
    def measure(path, executed=None):
        if path.name == "a.ipynb":
            raise RuntimeError("cell 3 failed\nNameError: x")
        return {"seconds": 1.0, "peak_rss_mb": 1}

    monkeypatch.setattr(notebook_bench, "measure", measure)
    assert cli.main(["measure-notebooks", "a.ipynb", "b.ipynb", "--out", str(tmp_path)]) == 1
    rows = json.loads((tmp_path / "notebooks.json").read_text())
    assert rows["a.ipynb"]["error"] == "RuntimeError: NameError: x"
    assert rows["b.ipynb"]["seconds"] == 1.0


def test_without_paths_it_times_the_checkouts_solutions(tmp_path, fake_measure):
    assert cli.main(["measure-notebooks", "--out", str(tmp_path)]) == 0
    assert fake_measure == config.course_notebooks()
    assert fake_measure and all(p.parent.name == "solutions" for p in fake_measure)


def test_report_notebooks_calls_the_module_in_process(tmp_path, fake_measure, monkeypatch):
    from mclab import report

    monkeypatch.setattr(report, "run_report",
                        lambda names, out, force, add=None, seeds=1: {"rows": []})
    assert cli.main(["report", "--only", "base", "--notebooks", "--out", str(tmp_path)]) == 0
    assert fake_measure == config.course_notebooks()
    assert (tmp_path / "notebooks.json").exists()


def test_an_installed_package_asks_for_paths(tmp_path, monkeypatch, capsys, fake_measure):
    from mclab import report

    monkeypatch.setattr(config, "checkout_root", lambda: None)
    monkeypatch.setattr(report, "run_report", lambda *a, **k: pytest.fail("ran the methods"))
    for argv in (["measure-notebooks"], ["report", "--notebooks"]):
        assert cli.main([*argv, "--out", str(tmp_path)]) == 2
        assert "name the notebooks" in capsys.readouterr().err
    assert fake_measure == []


def test_report_checks_mclab_data_before_any_method_runs(tmp_path, monkeypatch, capsys):
    from mclab import report

    monkeypatch.setenv("MCLAB_DATA", str(tmp_path / "missing"))
    monkeypatch.setattr(report, "run_report", lambda *a, **k: pytest.fail("ran the methods"))
    assert cli.main(["report", "--only", "base", "--out", str(tmp_path)]) == 2
    assert "MCLAB_DATA=" in capsys.readouterr().err


def test_paths_belong_to_measure_notebooks_only():
    with pytest.raises(SystemExit):
        cli.main(["report", "solutions/00_foundation_model.ipynb"])


def test_the_profile_names_each_cells_time_and_peak(tmp_path):
    """A real kernel: the cell that holds 300 MB shows it in its own peak, the next does not."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("a profile"),
                nbformat.v4.new_code_cell("import time\nx = b'1' * (300 * 2**20)\n"
                                          "time.sleep(0.6)\ndel x"),
                nbformat.v4.new_code_cell("time.sleep(0.4)")]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    row = notebook_bench.measure_once(path, timeout=120)
    (first, s1, peak1), (second, s2, peak2) = row["cells"]
    assert (first, second) == (1, 2)  # indices among all cells, markdown counted
    assert s1 >= 0.6 and s2 >= 0.4
    assert peak1 - peak2 > 200, row["cells"]
    assert row["peak_rss_mb"] >= peak1
    assert len(row["load_average"]) == 2


def test_the_performance_table_flags_what_is_over_budget():
    """tools/performance_table.py: docs/performance.md's profile, from notebooks.json."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "tools" / "performance_table.py"
    spec = importlib.util.spec_from_file_location("performance_table", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = tool.table({
        "a.ipynb": {"seconds": 400.0, "peak_rss_mb": 1000, "load_average": [1.0, 1.1],
                    "cells": [[3, 10.0, 900], [5, 300.0, 1000]]},
        "b.ipynb": {"seconds": 100.0, "peak_rss_mb": 2500, "slowest_cells": {"cell 2": 50.0}},
        "c.ipynb": {"error": "RuntimeError: x"}}, cells=1)
    assert "| a.ipynb | 400 | 1,000 | time no, memory yes | 1.00, 1.10 | 5: 300 s (1,000 MB) |" in text
    assert "| b.ipynb | 100 | 2,500 | time yes, memory no | not recorded | cell 2: 50 s |" in text
    assert "failed: RuntimeError: x" in text and "**500** (budget 1,800)" in text
