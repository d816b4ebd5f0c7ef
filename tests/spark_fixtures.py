"""Real Spark for the tests: local[2], a standalone cluster, a Spark Connect server, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbtune._events import Listener

SPARK_HOME = Path(__import__("pyspark").__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def spark_env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SPARK_HOME=str(SPARK_HOME),
        PYSPARK_PYTHON=sys.executable,
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(tmp / "logs"),
        SPARK_PID_DIR=str(tmp / "pids"),
        SPARK_WORKER_DIR=str(tmp / "work"),
        SPARK_NO_DAEMONIZE="1",
    )
    return env


def stop_active_session() -> None:
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()


@pytest.fixture(scope="module")
def local_spark() -> Iterator[Any]:
    """A classic local[2] session, as `--backend auto` would start it."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    stop_active_session()
    from nbtune.spark._session import start_local_session

    os.environ["NBTUNE_SPARK_MASTER"] = "local[2]"
    try:
        spark = start_local_session()
    finally:
        os.environ.pop("NBTUNE_SPARK_MASTER", None)
    yield spark
    spark.stop()


def active_jobs(spark: Any, within: float = 0.0) -> list[int]:
    """Spark jobs still running after waiting up to `within` seconds for them to end.

    A keep-alive round (nbtune.spark._keepwarm, a job of a few milliseconds a task) is let finish first.
    """
    from nbtune.spark._keepwarm import keeper_of

    keeper, settle = keeper_of(spark), time.monotonic() + 10
    while keeper.in_round and time.monotonic() < settle:
        time.sleep(0.05)
    deadline = time.monotonic() + within
    while True:
        jobs = list(spark.sparkContext.statusTracker().getActiveJobsIds())
        if not jobs or time.monotonic() >= deadline:
            return jobs
        time.sleep(0.1)


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start a Spark daemon in its own process group, so stop() ends the JVM and its children."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=5) as resp:
            return int(json.load(resp).get("aliveworkers", 0))
    except (OSError, ValueError):  # the master's web UI starts after its RPC port, at first with an empty page
        return 0


@pytest.fixture(scope="module")
def standalone_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A master and two workers (--cores 1 each) from pyspark's own distribution, on 127.0.0.1."""
    tmp = tmp_path_factory.mktemp("cluster")
    env = spark_env(tmp)
    port, ui = free_port(), free_port()
    spark_class = str(SPARK_HOME / "bin" / "spark-class")
    master = start(
        [
            spark_class,
            "org.apache.spark.deploy.master.Master",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--webui-port",
            str(ui),
        ],
        env,
        tmp / "master.log",
    )
    workers = []
    try:
        wait_for_port(port)
        for n in range(2):
            cmd = [
                spark_class,
                "org.apache.spark.deploy.worker.Worker",
                "--host",
                "127.0.0.1",
                "--cores",
                "1",
                "--memory",
                "2g",
                "--webui-port",
                str(free_port()),
                "--work-dir",
                str(tmp / f"work{n}"),
                f"spark://127.0.0.1:{port}",
            ]
            workers.append(start(cmd, env, tmp / f"worker{n}.log"))
        deadline = time.monotonic() + 90
        while alive_workers(ui) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the standalone workers did not register")
            time.sleep(0.5)
        yield {"url": f"spark://127.0.0.1:{port}", "workers": workers, "ui": ui, "dir": tmp}
    finally:
        for proc in [*workers, master]:
            stop(proc)


@pytest.fixture(scope="module")
def connect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Spark Connect server (local[2]) started with sbin/start-connect-server.sh; yields its sc:// URL."""
    tmp = tmp_path_factory.mktemp("connect")
    env = spark_env(tmp)
    port = free_port()
    cmd = [
        str(SPARK_HOME / "sbin" / "start-connect-server.sh"),
        "--master",
        "local[2]",
        "--conf",
        f"spark.connect.grpc.binding.port={port}",
        "--conf",
        "spark.connect.grpc.binding.address=127.0.0.1",
        "--conf",
        "spark.driver.host=127.0.0.1",
        "--conf",
        "spark.driver.bindAddress=127.0.0.1",
        "--conf",
        "spark.ui.enabled=false",
        "--conf",
        f"spark.pyspark.python={sys.executable}",
    ]
    server = start(cmd, env, tmp / "connect.log")
    # IPython's test shell puts a module without __spec__ in sys.modules["__main__"]; pyspark's Connect
    # client reads that attribute (a kernel's user module has it).
    main = sys.modules["__main__"]
    if not hasattr(main, "__spec__"):
        main.__spec__ = None
    try:
        wait_for_port(port, timeout=120)
        yield f"sc://127.0.0.1:{port}"
    finally:
        stop(server)


class CancelAfter(Listener):
    """A search listener that presses Cancel (SearchInfo.cancel) once n trials have finished."""

    def __init__(self, n: int) -> None:
        self.n, self.finished, self.info, self.cancelled_at = n, 0, None, 0.0

    def search_started(self, info: Any, result: Any) -> None:
        self.info = info

    def trial_finished(self, record: Any) -> None:
        self.finished += 1
        if self.finished == self.n:
            self.cancelled_at = time.monotonic()
            self.info.cancel()
