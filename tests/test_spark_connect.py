"""The Spark backend through a real Spark Connect server (no SparkContext on the client)."""

from __future__ import annotations

import os
import time

import pytest
from spark_fixtures import CancelAfter, connect_server  # noqa: F401 - fixture

import nbtune

pytestmark = [pytest.mark.spark, pytest.mark.connect]


@pytest.fixture(scope="module")
def connect_spark(connect_server):
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(connect_server).getOrCreate()
    yield spark
    spark.stop()
    # stop() of a remote Connect session leaves the process in Connect mode; later tests start classic Spark.
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)


def test_a_search_runs_through_spark_connect(connect_spark):
    assert type(connect_spark).__module__.startswith("pyspark.sql.connect")
    cell = "import os\nx = 1.0  # tune: uniform(0, 1)\nk = 'a'  # tune: choice('a', 'b')\npid = os.getpid()\nloss = x\n"
    result = nbtune.tune(
        cell, {"spark": connect_spark}, backend="spark", max_evals=6, log_metrics="pid", quiet=True, mlflow=False
    )
    assert result.backend == "spark" and result.parallelism == 2  # from the server's local[2]
    assert [r.status for r in result.records] == ["ok"] * 6
    assert os.getpid() not in {r.log_metrics["pid"] for r in result.records}  # ran on the server's workers


def test_cancel_interrupts_the_pool_on_spark_connect_and_the_next_search_works(connect_spark):
    cell = "import time\nx = 1.0  # tune: uniform(0, 1)\ntime.sleep(1.0)\nloss = x\n"
    canceller = CancelAfter(2)
    result = nbtune.tune(
        cell, {"spark": connect_spark}, backend="spark", max_evals=40, quiet=True, mlflow=False, listeners=[canceller]
    )
    assert result.stop_reason == "cancelled" and time.monotonic() - canceller.cancelled_at < 5
    again = nbtune.tune(
        "x = 1.0  # tune: uniform(0, 1)\nloss = x\n",
        {"spark": connect_spark},
        backend="spark",
        max_evals=3,
        quiet=True,
        mlflow=False,
    )
    assert [r.status for r in again.records] == ["ok"] * 3


def test_pruning_works_through_spark_connect(connect_spark):
    cell = (
        "x = 0.5  # tune: uniform(0, 1)\nimport nbtune\nfor s in range(1, 10):\n    nbtune.report(loss=x + 1.0 / s)\n"
    )
    cell += "loss = x + 1 / 9\n"
    result = nbtune.tune(
        cell, {"spark": connect_spark}, backend="spark", max_evals=12, prune="asha", seed=1, quiet=True, mlflow=False
    )
    assert result.counts()["pruned"] >= 2 and all(r.curve for r in result.records)
