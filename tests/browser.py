"""Browser fixtures: JupyterLab on 127.0.0.1 and a Playwright page in Debian's chromium.

tests/conftest.py registers them once for every test module (a session fixture imported into two
modules would be two fixtures, and two Playwright instances cannot coexist in one thread);
the fixtures are named `jupyterlab_server` and `page`. Mark such tests `@pytest.mark.browser`.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("NBTUNE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@dataclass
class JupyterLab:
    """A running JupyterLab: where it listens, its token and the directory it serves."""

    url: str
    token: str
    root_dir: Path
    process: subprocess.Popen[bytes]

    def lab_url(self, path: str = "") -> str:
        """The URL that opens `path` (relative to root_dir) alone in a fresh JupyterLab workspace, token included."""
        return f"{self.url}/lab/tree/{path}?reset&token={self.token}"

    def api(self, path: str) -> Any:
        """GET a Jupyter server REST endpoint, e.g. `api/kernels`."""
        request = urllib.request.Request(f"{self.url}/{path}", headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def write_notebook(self, name: str, cells: list[str]) -> Path:
        """Save a notebook of code cells in the served directory."""
        import nbformat

        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell(source) for source in cells]
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        path = self.root_dir / name
        nbformat.write(nb, path)
        return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(lab: JupyterLab, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {lab.process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            lab.api("api/status")
            return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="session", name="jupyterlab_server")
def jupyterlab_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab on a free 127.0.0.1 port, with a token and a temp root dir; stopped afterwards."""
    base = tmp_path_factory.mktemp("jupyterlab")
    root, home = base / "root", base / "home"
    root.mkdir()
    home.mkdir()
    port, token = _free_port(), secrets.token_hex(16)
    # No "get notified about Jupyter news?" toast over the page.
    news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env = {
        **os.environ,
        # Settings, workspaces and runtime files of this server only: nothing from the user's own Jupyter.
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.news_url=",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # no PyPI queries from the extension manager
        "--ServerApp.terminals_enabled=False",
        *(["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
    ]
    log = base / "jupyterlab.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, root, process)
    try:
        _wait_until_up(lab, log)
        yield lab
    finally:
        _stop(process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)  # the server and the kernels it started
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session", name="chromium")
def chromium_fixture() -> Iterator[Any]:
    """Debian's chromium driven by Playwright (Playwright's own browser download does not work here)."""
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(name="page")
def page_fixture(chromium: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh Playwright page (1400 x 1000); a failing test leaves a screenshot in test-artifacts/."""
    context = chromium.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    failed_before = request.session.testsfailed
    try:
        yield page
    finally:
        if request.session.testsfailed > failed_before:  # the test's call phase failed: keep what it saw
            screenshot(page, f"{request.node.name}-failed")
        context.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as test-artifacts/NAME.png."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
