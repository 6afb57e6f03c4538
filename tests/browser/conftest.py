"""A real JupyterLab driven by a real browser (Debian's chromium through Playwright).

JupyterLab is started the way `mlops-lab lab` starts it: on 127.0.0.1, in a fresh workspace holding
the learner's copies of the labs, with a fresh Jupyter config (no user settings). Every test leaves a
screenshot in test-output/browser/, so a failing run shows what the learner saw.

The tests skip when Playwright or chromium is missing, unless MLOPS_LAB_REQUIRE names "browser" (or
"all", as .ci/run sets it; MLOPS_LAB_REQUIRE_BROWSER=1 too): there a missing browser is a failure."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from ..conftest import ROOT, missing, using_home

CHROMIUM = os.environ.get("MLOPS_LAB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = ROOT / "test-output" / "browser"
# JupyterLab settings for a quiet, fully rendered page: no news prompt (no traffic outside this
# machine), and every cell in the DOM (JupyterLab otherwise renders only the cells in view).
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}


def _missing_browser() -> str | None:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    if not Path(CHROMIUM).exists():
        return f"no chromium at {CHROMIUM} (MLOPS_LAB_CHROMIUM names another)"
    return None


@pytest.fixture(scope="session")
def browser_ready():
    reason = _missing_browser()
    if reason:
        missing("browser", reason)


class JupyterLab:
    def __init__(self, url: str, token: str, workspace: Path, process: subprocess.Popen, log: Path):
        self.url, self.token, self.workspace, self.process, self.log = url, token, workspace, process, log

    def page_url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.url}/{path.lstrip('/')}{sep}token={self.token}"


@pytest.fixture(scope="session")
def jupyterlab(browser_ready, tmp_path_factory):
    import httpx

    from mlops_lab import learner
    from mlops_lab.serving.server import free_port

    base = tmp_path_factory.mktemp("jupyterlab")
    workspace, config_dir, runtime_dir = base / "workspace", base / "jupyter-config", base / "jupyter-runtime"
    for name, settings in LAB_SETTINGS.items():
        target = config_dir / "lab" / "user-settings" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(settings))
    env = {**os.environ, "MLOPS_LAB_HOME": str(workspace), "JUPYTER_CONFIG_DIR": str(config_dir),
           "JUPYTER_RUNTIME_DIR": str(runtime_dir)}
    env.pop("MLOPS_LAB_STRICT", None)  # a learner's wrong answer prints feedback, it does not raise
    # the copies `mlops-lab lab` makes, by the real command
    subprocess.run([sys.executable, "-m", "mlops_lab.cli", "lab", "--copy-only", "--root", str(ROOT)],
                   env=env, check=True, capture_output=True, timeout=60)
    port, token = free_port(), os.urandom(12).hex()
    extra = ["--no-browser", "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={token}",
             "--ServerApp.open_browser=False"]
    with using_home(workspace):  # as `mlops-lab lab` starts it: --allow-root as root, the course's Jupyter config
        command = learner.jupyter_lab_command("00", tuple(extra), ROOT)
    env = learner.jupyter_environment(env)
    log = base / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=base)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300  # 90 s was not enough on a 2-core machine at load 40
    while True:
        try:
            if httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"JupyterLab did not start; its log ends with:\n{log.read_text()[-3000:]}")
        time.sleep(0.3)
    yield JupyterLab(url, token, workspace, process, log)
    # Shut the kernels down through the API first (they may have started servers of their own).
    try:
        for kernel in httpx.get(f"{url}/api/kernels", params={"token": token}, timeout=5).json():
            httpx.delete(f"{url}/api/kernels/{kernel['id']}", params={"token": token}, timeout=30)
    except httpx.HTTPError:
        pass
    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture(scope="session")
def browser(browser_ready):
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="mlops-lab-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 900},
        )
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser, request):
    page = browser.new_page()
    page.set_default_timeout(60_000)
    yield page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.screenshot(path=str(SCREENSHOTS / f"{request.node.name}.png"), full_page=False)
    finally:
        page.close()
