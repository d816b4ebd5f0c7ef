"""`%tune_mlflow_ui`: an `mlflow ui` on 127.0.0.1 for a local store, and the links that point at it."""

from __future__ import annotations

import atexit
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nbtune._errors import TuneUsageError
from nbtune.tracking._links import LOCAL_UIS, is_databricks_uri, links_for, normalize_store_uri

DEFAULT_UI_PORT = 5000  # MLflow's own default, so the URL looks familiar
_UI_START_TIMEOUT = 180.0  # a cold `mlflow ui` takes ~15 s here, much longer on a busy machine


@dataclass
class _LocalUI:
    url: str
    store: str
    process: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.alive():
            # The UI runs in its own session (mlflow starts uvicorn under it): end that group only.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> bool:
    """Poll `url` until it answers 200; False on timeout or when `process` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as answer:
                if answer.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.25)
    return False


def start_ui(store_uri: str, port: int | None = None, timeout: float = _UI_START_TIMEOUT) -> str:
    """Start (or reuse) `mlflow ui` on 127.0.0.1 for a local store and return its URL."""
    store = normalize_store_uri(store_uri)
    running = LOCAL_UIS.get(store)
    if running is not None and running.alive():
        return running.url
    if port is None:
        port = DEFAULT_UI_PORT if _port_free(DEFAULT_UI_PORT) else free_port()
    elif not _port_free(port):
        raise TuneUsageError(f"%tune_mlflow_ui: port {port} is in use; pick another with --port")
    log = Path(tempfile.mkstemp(prefix="nbtune-mlflow-ui-", suffix=".log")[1])
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store]
    command += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    # Background job runners are for GenAI features; a learner's UI does not need the extra processes.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    ui = _LocalUI(f"http://127.0.0.1:{port}", store, process, log)
    if not wait_for_http(f"{ui.url}/health", timeout, process):
        ui.stop()
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise TuneUsageError(f"%tune_mlflow_ui: the MLflow UI did not start ({tail[0]}); log: {log}")
    LOCAL_UIS[store] = ui
    return ui.url


def stop_uis() -> list[str]:
    """Stop every UI this kernel started; return their URLs."""
    stopped = []
    for store, ui in list(LOCAL_UIS.items()):
        ui.stop()
        stopped.append(ui.url)
        del LOCAL_UIS[store]
    return stopped


atexit.register(stop_uis)


def mlflow_ui_magic(line: str, tracking_uri: str | None, configured_ui: str | None) -> str | None:
    """`%tune_mlflow_ui [--port N] [--stop]`: print (and return) the URL of an MLflow UI for the store."""
    words = shlex.split(line)
    if words == ["--stop"]:
        stopped = stop_uis()
        print("Stopped " + ", ".join(stopped) if stopped else "No MLflow UI was started by this kernel.")
        return None
    port: int | None = None
    if len(words) == 2 and words[0] == "--port" and words[1].isdigit():
        port = int(words[1])
    elif words:
        raise TuneUsageError("usage: %tune_mlflow_ui [--port N] | --stop")
    if tracking_uri is None:
        import mlflow

        tracking_uri = str(mlflow.get_tracking_uri())
    links = links_for(tracking_uri, configured_ui)
    if is_databricks_uri(tracking_uri):
        print("On Databricks the MLflow UI is the workspace's Experiments page; `_tune.parent_url` links there.")
        return links.base
    if links.base is not None:
        print(f"MLflow UI: {links.base}")
        return links.base
    print(f"Starting the MLflow UI for {tracking_uri} ...", flush=True)
    url = start_ui(tracking_uri, port)
    print(f"MLflow UI: {url}  (runs of later searches link here; stop it with %tune_mlflow_ui --stop)")
    return url
