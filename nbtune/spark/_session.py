"""Find or start the SparkSession for a search, and talk to classic Spark and Spark Connect alike."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._text import first_line

_LOOPBACK = "127.0.0.1"


class SparkUnavailable(TuneUsageError):
    """Spark could not be imported or started; the message names the fix."""


def is_connect(spark: Any) -> bool:
    """True for a Spark Connect session (no SparkContext there)."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def active_session(namespace: Mapping[str, Any]) -> Any | None:
    """The session the user already has: the active one, or a `spark` variable (Databricks)."""
    candidate = namespace.get("spark")
    if candidate is not None and type(candidate).__module__.startswith("pyspark.sql"):
        return candidate
    if "pyspark" not in sys.modules:
        return None  # pyspark not imported (or not installed): no session can exist yet
    from pyspark.sql import SparkSession

    return SparkSession.getActiveSession()


def start_local_session() -> Any:
    """Start (or reuse) `local[*]` on loopback, quiet, with the UI off unless NBTUNE_SPARK_UI=1."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkUnavailable("pyspark is not installed: pip install pyspark, or use --backend local") from None
    # Workers must run this Python, with nbtune and the notebook's packages on it.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(os.environ.get("NBTUNE_SPARK_MASTER", "local[*]"))
        .appName("nbtune")
        .config("spark.driver.host", _LOOPBACK)
        .config("spark.driver.bindAddress", _LOOPBACK)
        .config("spark.ui.enabled", os.environ.get("NBTUNE_SPARK_UI", "0") == "1")
        .config("spark.ui.showConsoleProgress", "false")
    )
    try:
        with _quiet_stderr():
            spark = builder.getOrCreate()
    except Exception as exc:
        raise SparkUnavailable(f"Spark could not start ({first_line(exc)}); {_hint(exc)}") from None
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def _hint(exc: BaseException) -> str:
    text = str(exc).lower()
    if "java" in text or "gateway" in text:  # no JVM, or one that died at start: usually no Java 17
        return (
            "Spark 4 needs Java 17 or newer: install it (e.g. apt-get install openjdk-17-jre-headless) "
            "and set JAVA_HOME, or use --backend local"
        )
    return "fix the Spark setup named above, or use --backend local"


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    # The JVM's start-up chatter (log4j profile, native-hadoop warnings) is not for notebook users.
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ else 2
        saved = os.dup(fd)
    except (OSError, ValueError):
        yield
        return
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)


def default_parallelism(spark: Any) -> int:
    """How many trials the session can run at once."""
    if not is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    conf = spark.conf.get("spark.default.parallelism", None)
    if conf:
        return int(conf)
    master = spark.conf.get("spark.master", "") or ""
    match = re.match(r"local\[(\d+|\*)", master)
    if match:
        return os.cpu_count() or 2 if match.group(1) == "*" else int(match.group(1))
    return 2


def coordinator_host(spark: Any) -> str:
    """Where the workers can reach this process: loopback for local work, else the driver's host.

    NBTUNE_COORDINATOR_HOST overrides it (e.g. a notebook that is a Spark Connect client
    on another machine than the cluster).
    """
    override = os.environ.get("NBTUNE_COORDINATOR_HOST")
    if override:
        return override
    if is_connect(spark):
        host = str(getattr(spark.client, "host", "") or "")
        if host in ("", "localhost") or host.startswith("127."):
            return _LOOPBACK
        return socket.gethostbyname(socket.gethostname())
    if str(spark.conf.get("spark.master", "")).startswith("local"):
        return _LOOPBACK
    return str(spark.conf.get("spark.driver.host"))


@contextlib.contextmanager
def job_tags(spark: Any, *tags: str) -> Iterator[None]:
    """Tag the Spark jobs this thread starts, so cancel_tag can stop them."""
    if is_connect(spark):
        for tag in tags:
            spark.addTag(tag)
        try:
            yield
        finally:
            spark.clearTags()
        return
    sc = spark.sparkContext
    sc.setInterruptOnCancel(True)  # kill the running task, not only the job's bookkeeping
    for tag in tags:
        sc.addJobTag(tag)
    try:
        yield
    finally:
        sc.clearJobTags()


def cancel_tag(spark: Any, tag: str) -> None:
    """Cancel every job carrying `tag` (SparkContext job tags; interruptTag on Spark Connect)."""
    if is_connect(spark):
        spark.interruptTag(tag)
    else:
        spark.sparkContext.cancelJobsWithTag(tag)
