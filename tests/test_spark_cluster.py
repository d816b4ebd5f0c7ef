"""The Spark backend on a standalone cluster: a master and two one-core workers on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest
from spark_fixtures import standalone_cluster, stop_active_session  # noqa: F401 - fixture

import nbtune
from nbtune._events import Listener

pytestmark = [pytest.mark.spark, pytest.mark.cluster]

CELL = "import os, time\nx = 1.0  # tune: uniform(0, 1)\ntime.sleep(nap)\nwhere = os.getcwd()\nloss = x\n"


@pytest.fixture(scope="module")
def cluster_spark(standalone_cluster):
    stop_active_session()
    os.environ["PYSPARK_PYTHON"] = sys.executable  # the executors' Python: this venv, with nbtune on it
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(standalone_cluster["url"])
        .appName("nbtune-cluster-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.executor.cores", "1")
        .config("spark.executor.memory", "1g")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    yield spark
    spark.stop()


def search(spark, max_evals, nap, listeners=()):
    return nbtune.tune(
        CELL,
        {"spark": spark, "nap": nap},
        backend="spark",
        parallelism=2,
        max_evals=max_evals,
        log_metrics="where",
        quiet=True,
        mlflow=False,
        listeners=list(listeners),
    )


def executor_of(record):
    # A Python worker runs in its Spark worker's work dir (.../work<N>/app-<id>), one per worker here.
    return record.log_metrics["where"]


def test_trials_run_on_both_executors(cluster_spark):
    result = search(cluster_spark, 8, 0.5)
    assert [r.status for r in result.records] == ["ok"] * 8
    assert len({executor_of(r) for r in result.records}) == 2


def executor_jvms(worker_pid):
    """PIDs of the executor JVMs a standalone worker launched (its descendants running the executor)."""
    children = {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmd:
                children.setdefault(ppid, []).append((int(entry), b"CoarseGrainedExecutorBackend" in cmd.read()))
        except (OSError, ValueError, IndexError):
            continue  # not a process, or gone meanwhile
    found, todo = [], [worker_pid]
    while todo:
        for pid, is_executor in children.get(todo.pop(), []):
            todo.append(pid)
            if is_executor:
                found.append(pid)
    return found


def test_pool_map_loses_no_result_when_an_executor_jvm_dies(cluster_spark, standalone_cluster):
    def slow_square(x):
        time.sleep(0.2)
        return x * x

    victim = standalone_cluster["workers"][1]
    with nbtune.Pool(spark=cluster_spark, progress=False) as pool:
        assert pool.processes == 2
        results = []
        for n, value in enumerate(pool.imap(slow_square, range(40), chunksize=1)):
            results.append(value)
            if n == 8:
                executors = executor_jvms(victim.pid)
                assert executors, "the worker runs no executor"
                for pid in executors:
                    os.kill(pid, signal.SIGKILL)  # the JVM running this worker's tasks dies mid-map
    assert results == [x * x for x in range(40)]
    assert victim.poll() is None  # the Spark worker itself lives on and launches a new executor


class KillWorkerAfter(Listener):
    def __init__(self, n, pid):
        self.n, self.pid, self.done = n, pid, 0

    def trial_finished(self, record):
        self.done += 1
        if self.done == self.n:
            os.kill(self.pid, signal.SIGKILL)  # a whole Spark worker JVM dies


def test_a_dead_worker_jvm_does_not_lose_the_search(cluster_spark, standalone_cluster):
    victim = standalone_cluster["workers"][0]
    result = search(cluster_spark, 14, 1.0, [KillWorkerAfter(4, victim.pid)])
    assert victim.poll() is not None  # the worker really died
    assert len(result.records) == 14
    assert sum(r.status == "ok" for r in result.records) >= 13  # at most the lost trial, after its retry
    assert result.stop_reason == "completed"
