"""The course as a student meets it: JupyterLab in a real (headless) Chromium.

Starts JupyterLab on a free local port over a copy of notebooks/, opens a notebook, runs
every cell from the Run menu, moves one widget control, checks that the panel's output
changes, saves a screenshot under the test's output folder, and stops JupyterLab.
Needs Debian's chromium (`make e2e` installs it); Playwright drives it, no browser download.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(os.environ.get("MCLAB_E2E_OUT", ROOT / "runs" / "e2e"))
CHROME_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian chromium is not installed (run `make e2e`)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    for nb in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(nb, root / nb.name)
    port, token = _free_port(), "mclab-e2e"
    env = {**os.environ, "MCLAB_QUICK": "1", "HF_HUB_OFFLINE": "1",
           "MCLAB_RUNS": str(root / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}",
         "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", "--allow-root",
         f"--ServerApp.root_dir={root}", "--ServerApp.port_retries=0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROME_ARGS)
        yield chromium
        chromium.close()


def _run_all(page, timeout_s: int):
    page.locator(".jp-Notebook").first.wait_for(timeout=60_000)
    select = page.locator(".jp-Dialog").get_by_role("button", name="Select", exact=True)
    try:  # JupyterLab may ask which kernel to start; the notebook's own is preselected
        select.click(timeout=10_000)
    except Exception:
        pass
    page.wait_for_function(
        "document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset?.status == 'idle'"
        " || !!document.querySelector('.jp-Toolbar-kernelStatus')", timeout=60_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    page.wait_for_timeout(2000)
    _wait_idle(page, timeout_s)


def _wait_idle(page, timeout_s: int):
    """Wait until no cell is queued or running and the kernel reports idle."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        busy = page.locator(".jp-InputPrompt", has_text="[*]").count()
        if busy == 0 and "| Idle" in page.locator(".jp-StatusBar-Widget").all_inner_texts().__str__():
            return
        page.wait_for_timeout(1000)
    pytest.fail(f"the kernel did not finish within {timeout_s} s")


def _panel_output(page) -> str:
    return page.locator(".widget-output").last.inner_text()


@pytest.mark.parametrize("notebook", sorted(os.environ.get(
    "MCLAB_E2E_NOTEBOOKS", "00_foundation_model.ipynb").split(",")))
def test_notebook_runs_and_widget_redraws(lab, browser, notebook):
    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{base}/lab/tree/{notebook}?token={token}", wait_until="domcontentloaded")
    try:
        _run_all(page, timeout_s=900)
        slider = page.locator(".widget-slider .noUi-handle, .widget-slider input").last
        slider.wait_for(timeout=120_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{Path(notebook).stem}-failed.png"), full_page=True)
        raise
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                        has_text="Traceback").count() == 0, "a cell raised an error"
    slider.scroll_into_view_if_needed()
    page.wait_for_function("document.querySelectorAll('.widget-output').length > 0")
    before = _panel_output(page)
    slider.focus()
    slider.press("ArrowRight")
    page.wait_for_timeout(1500)  # the change reaches the kernel, which turns busy
    _wait_idle(page, 300)
    after = _panel_output(page)
    shot = ARTIFACTS / f"{Path(notebook).stem}.png"
    page.screenshot(path=str(shot), full_page=False)
    page.close()
    assert after != before and after.strip()
    assert shot.stat().st_size > 10_000
