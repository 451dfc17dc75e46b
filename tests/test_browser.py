"""A real browser: JupyterLab served on a free loopback port, driven by headless Chromium through Playwright.

Opens a training notebook and the analysis notebook (copies, so the committed notebooks stay stripped), runs
all cells in smoke mode, checks that the live plot and the task browser render and that no cell writes to
stderr (no Lightning banner), then uses the browser widget (change the task, press Predict) and checks that
the prediction appears. A second server, without smoke mode and with an empty output folder (a fresh clone: no
trained checkpoint), runs the analysis notebook and sees notes, no traceback and no report file.
Screenshots of notebooks 03 and 08 (the page and every picture) are saved under test-artifacts/, and of the
page when something fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip
TOKEN = "arclib-browser-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


NOTEBOOKS = ("03_exp_-1_decoder_only.ipynb", "08_analysis.ipynb")


def start_lab(tmp_path_factory, extra_env: dict[str, str]):
    """JupyterLab on a free port over copies of NOTEBOOKS; yields its URL and stops it afterwards."""
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make test` installs it (.ci/ensure-chromium)")
    root = tmp_path_factory.mktemp("lab")
    for name in NOTEBOOKS:
        shutil.copy(ROOT / "notebooks" / name, root / name)
    env = {k: v for k, v in os.environ.items() if k != "ARCLIB_SMOKE"} | extra_env
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        env[var] = str(tmp_path_factory.mktemp(var.lower()))
    settings = Path(sys.prefix) / "share/jupyter/lab/settings"
    settings.mkdir(parents=True, exist_ok=True)
    # Silence the news toast that covers the page, and render every cell (JupyterLab's default windowing keeps
    # only the cells in view in the page, so outputs scrolled away could not be read).
    (settings / "overrides.json").write_text(
        json.dumps(
            {
                "@jupyterlab/apputils-extension:notification": {
                    "fetchNews": "false",
                    "checkForUpdates": False,
                },
                "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
            }
        )
    )
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ip=127.0.0.1", f"--port={port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={root}",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("JupyterLab did not start")
            time.sleep(0.5)
    yield url
    server.terminate()
    server.wait(timeout=30)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    yield from start_lab(tmp_path_factory, {"ARCLIB_SMOKE": "1"})


@pytest.fixture(scope="module")
def fresh_output_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fresh_clone_outputs")  # no checkpoints/, no runs/: nothing trained yet


@pytest.fixture(scope="module")
def fresh_lab(tmp_path_factory, fresh_output_root):
    """No smoke mode (the notebook trains nothing itself) and an output root holding no checkpoint."""
    yield from start_lab(tmp_path_factory, {"ARCLIB_OUTPUT_ROOT": str(fresh_output_root)})


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page per test, so one notebook's kernel status cannot be mistaken for another's."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(240_000)
    yield page
    page.close()


def run_all(page, lab, notebook: str) -> None:
    page.goto(f"{lab}/lab/tree/{notebook}?reset&token={TOKEN}")  # reset: open only this notebook
    page.wait_for_selector("text=Python 3 (ipykernel) | Idle")  # the kernel is really connected
    page.click(".lm-MenuBar-itemLabel:text-is('Run')")
    page.click(".lm-Menu-itemLabel:text-is('Run All Cells')")


def wait_until_done(page) -> None:
    """Every code cell has an execution count and none shows an error."""
    page.wait_for_function(
        """() => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')];
            return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
        }""",
        timeout=300_000,
    )
    errors = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert errors.count() == 0, errors.first.inner_text()[:2000]


def outputs_text(page) -> str:
    """The text of every cell output (not the cells' source, which would match too)."""
    return "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())


def assert_no_stderr(page) -> None:
    """Quiet notebooks: no cell wrote to stderr (Lightning banners, warnings, tracebacks)."""
    stderr = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.count() == 0, stderr.first.inner_text()[:2000]


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def shoot_outputs(page, name: str) -> None:
    """The page, then every picture the notebook drew (each scrolled into view), as test artifacts."""
    shot(page, name)
    images = page.locator(".jp-OutputArea-output img")
    for k in range(images.count()):
        images.nth(k).screenshot(path=str(ARTIFACTS / f"{name}_picture_{k}.png"))


def test_training_notebook_runs_quietly_and_draws_live_curves(lab, page):
    # One training notebook: 04-07 are the same cells on other configs, and nbval runs each of them.
    try:
        run_all(page, lab, "03_exp_-1_decoder_only.ipynb")
        wait_until_done(page)
        page.locator(".arclib-live-plot img").first.wait_for()
        assert page.locator(".jp-OutputArea-output img").count() >= 3  # live curves + two galleries
        assert "epoch 2/2" in page.locator(".arclib-progress").first.inner_text()  # the one-line status
        assert "best checkpoint" in outputs_text(page)  # the run's summary table
        assert_no_stderr(page)
        shoot_outputs(page, "notebook_03")
    except Exception:
        shot(page, "03_failure")
        raise


def test_analysis_notebook_task_browser_predicts(lab, page):
    try:
        run_all(page, lab, "08_analysis.ipynb")
        wait_until_done(page)
        browser = page.locator(".arclib-task-browser").first
        browser.wait_for()
        task = browser.locator("select").nth(1)
        options = task.locator("option").all_inner_texts()
        assert len(options) >= 2
        task.select_option(label=options[1])
        browser.get_by_role("button", name="Predict").click()
        result = browser.locator(".arclib-prediction img").first
        result.wait_for()
        status = browser.locator(".arclib-status").inner_text()
        assert options[1] in status and any(
            s in status for s in ("exact match", "wrong", "shape mismatch", "no valid")
        )
        assert_no_stderr(page)
        shoot_outputs(page, "notebook_08")
    except Exception:
        shot(page, "analysis_notebook_failure")
        raise


def test_analysis_notebook_on_a_fresh_clone_shows_notes_not_tracebacks(fresh_lab, fresh_output_root, page):
    try:
        run_all(page, fresh_lab, "08_analysis.ipynb")
        wait_until_done(page)  # every cell ran, none raised
        text = outputs_text(page)
        assert text.count("MISSING: train it with") >= 5 and "No report written." in text
        assert text.count("No trained experiment under") >= 5  # a note in each later section
        assert page.locator(".jp-OutputArea-output img").count() == 0  # no empty chart
        assert "no checkpoints under" in page.locator(".arclib-status").first.inner_text()
        assert_no_stderr(page)
        assert not list(fresh_output_root.rglob("ablation_results*"))  # no empty report file
        shot(page, "notebook_08_fresh_clone")
    except Exception:
        shot(page, "analysis_fresh_clone_failure")
        raise
