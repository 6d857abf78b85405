"""The course as a student meets it: JupyterLab in a real (headless) Chromium.

Starts JupyterLab on a free local port over a copy of notebooks/, opens a notebook, runs
every cell from the Run menu, moves one widget control, checks that the panel's output
changes, saves a screenshot under the test's output folder, and stops JupyterLab.
Needs Debian's chromium (`make e2e` installs it); Playwright drives it, no browser download.
"""

from __future__ import annotations

import json
import os
import re
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

# Render every cell (JupyterLab 4 otherwise detaches cells scrolled out of view, and their
# widget outputs with them) and keep the news pop-up from covering the panel.
SETTINGS = {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
            "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                            "checkForUpdates": False}}

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
    settings = tmp_path_factory.mktemp("lab-settings")
    for plugin, values in SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, "MCLAB_QUICK": "1", "HF_HUB_OFFLINE": "1",
           "MCLAB_RUNS": str(root / "runs"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path_factory.mktemp("lab-workspaces"))}
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


def _kernel_state(base: str, token: str) -> set[str]:
    with urllib.request.urlopen(f"{base}/api/kernels?token={token}", timeout=5) as resp:
        return {k["execution_state"] for k in json.load(resp)}


def _wait_kernel(base: str, token: str, timeout_s: int, turn_busy_s: int = 10) -> None:
    """Wait for the kernel to start working (up to `turn_busy_s`), then to be idle again.

    Asks the server's REST API rather than reading the status bar: the page can lag.
    """
    deadline = time.time() + turn_busy_s
    while time.time() < deadline and "busy" not in _kernel_state(base, token):
        time.sleep(0.25)
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if _kernel_state(base, token) == {"idle"}:
            return
        time.sleep(1)
    pytest.fail(f"the kernel did not finish within {timeout_s} s")


def _run_all(page, base: str, token: str, timeout_s: int) -> None:
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
    deadline = time.time() + timeout_s
    while page.locator(".jp-InputPrompt", has_text="[*]").count() and time.time() < deadline:
        page.wait_for_timeout(1000)
    _wait_kernel(base, token, max(1, int(deadline - time.time())))


def _panel(page):
    """The last widget panel of the notebook: a box with a slider and an output area."""
    return page.locator(".widget-vbox:has(> .widget-output):has(.widget-slider)").last


# Notebook: the button its panel needs after a knob moves (None: it re-runs by itself), and
# what the panel shows once that run is done (None: the kernel going idle is enough). A
# training panel prints "training with ..." when it starts and its numbers at the end; its
# default view already holds the same numbers, so the pattern needs both.
CASES = {"00_foundation_model.ipynb": (None, None), "01_prompt_based.ipynb": (None, None),
         "04_fine_tuning_sft.ipynb": ("Train", re.compile(r"training with[\s\S]*last eval loss"))}
RUN_TIMEOUT_S = 900  # a bound for a hung run, never the expected time of one


@pytest.mark.parametrize("notebook", sorted(os.environ.get(
    "MCLAB_E2E_NOTEBOOKS", "01_prompt_based.ipynb,04_fine_tuning_sft.ipynb").split(",")))
def test_notebook_runs_and_widget_redraws(lab, browser, notebook):
    from playwright.sync_api import expect

    base, token = lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    stem = Path(notebook).stem
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{base}/lab/tree/{notebook}?token={token}", wait_until="domcontentloaded")
    try:
        _run_all(page, base, token, timeout_s=1200)
        assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                            has_text="Traceback").count() == 0, "a cell raised an error"
        panel = _panel(page)
        panel.wait_for(timeout=60_000)
        panel.scroll_into_view_if_needed()
        output = panel.locator(":scope > .widget-output")
        before = output.inner_html()
        assert output.inner_text().strip(), "the panel showed nothing before the knob moved"
        handle = panel.locator(".widget-slider .noUi-handle").first
        handle.focus()
        handle.press("ArrowRight")
        button, done_text = CASES.get(notebook, (None, None))
        if button:
            panel.get_by_role("button", name=button, exact=True).click()
        # wait on what the panel says, however long this machine takes
        if done_text:
            expect(output).to_contain_text(done_text, timeout=RUN_TIMEOUT_S * 1000)
            expect(output).not_to_contain_text("default run", timeout=5_000)
        else:
            _wait_changed(page, output, before, RUN_TIMEOUT_S)
        _wait_kernel(base, token, timeout_s=RUN_TIMEOUT_S)
        page.wait_for_timeout(1000)  # the last output message reaches the page
        after = output.inner_html()
        output.locator(":scope > *").last.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / f"{stem}.png"), full_page=False)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{stem}-failed.png"), full_page=False)
        raise
    finally:
        page.close()
    assert after != before, "moving the knob did not change the panel's output"
    assert "Traceback" not in after and "⚠" not in after, after[-2000:]
    if "<img" in before:  # a panel that draws: the plot is redrawn, not only the text
        assert _images(before) != _images(after), "the plot did not change"
    assert (ARTIFACTS / f"{stem}.png").stat().st_size > 10_000


def _wait_changed(page, output, before: str, timeout_s: int) -> None:
    """Wait until the panel's output differs from `before` (its redraw has begun)."""
    deadline = time.time() + timeout_s
    while output.inner_html() == before:
        if time.time() > deadline:
            pytest.fail(f"the panel did not redraw within {timeout_s} s")
        page.wait_for_timeout(500)


def _images(html: str) -> list[str]:
    return re.findall(r'<img[^>]+src="([^"]+)"', html)
