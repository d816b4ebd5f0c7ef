"""Warm workers between searches (the keep-alive) and large captured data on every worker at once."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spark_fixtures import connect_server, local_spark  # noqa: F401 - fixtures

import nbtune
import nbtune.spark._pool as pool_module
from nbtune.spark._keepwarm import INTERVAL, KeepWarm, keeper_of
from nbtune.spark._shared import MIN_BYTES, SharedPayload
from nbtune.trial._payload import pack, receive, send

PROBE = (
    "import os, sys, time\n"
    "x = 1.0  # tune: uniform(0, 1)\n"
    "had = float(probe in sys.modules)\n"
    "sys.path.insert(0, where)\n"
    "__import__(probe)\n"
    "pid = os.getpid()\n"
    "open(os.path.join(gate, str(pid)), 'w').close()\n"
    "deadline = time.time() + 60\n"
    "while len(os.listdir(gate)) < slots and time.time() < deadline:\n"
    "    time.sleep(0.02)\n"
    "loss = x\n"
)


def tune(spark: Any, cell: str, ns: dict[str, Any], minutes: float, monkeypatch: pytest.MonkeyPatch, **options: Any):
    """A search on the pool with keep_warm=minutes (the option reaches the pool through the backend)."""
    base = pool_module.SparkPoolExecutor

    class Pool(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["keep_warm"] = minutes
            super().__init__(*args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(pool_module, "SparkPoolExecutor", Pool)
        options = {"max_evals": 6, "quiet": True, "mlflow": False, **options}
        return nbtune.tune(cell, {"spark": spark, **ns}, backend="spark", **options)


@pytest.fixture
def keeper(local_spark: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[KeepWarm]:
    """The session's keep-alive with short rounds, switched off again after the test.

    The test's jobs get a Python worker pool of their own: Spark keeps one pool per worker environment,
    and earlier tests' idle workers in the shared one would take tasks in turn with this test's.
    """
    monkeypatch.setitem(local_spark.sparkContext.environment, "NBTUNE_TEST_POOL", uuid.uuid4().hex)
    k = keeper_of(local_spark)
    k.interval = 0.5
    yield k
    k.search_started()  # as a search would: pause, and end the thread with 0 minutes
    k.search_ended(0, 1)
    k.interval = INTERVAL


def probe_module(tmp_path: Path) -> dict[str, Any]:
    name = f"nbtune_probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("VALUE = 1\n")
    return {"probe": name, "where": str(tmp_path), "slots": 2}


def gated(ns: dict[str, Any], tmp_path: Path) -> dict[str, Any]:
    """PROBE's namespace for one search: its trials wait until every slot's worker has run one.

    Without the gate a worker slow to start (a loaded machine) may serve none of a search's quick trials,
    and so never import the probe: warm is not the same as having run the search.
    """
    gate = tmp_path / f"gate-{uuid.uuid4().hex[:8]}"
    gate.mkdir()
    return {**ns, "gate": str(gate)}


def pids_of(result: Any) -> set[int]:
    return {int(r.log_metrics["pid"]) for r in result.records}


def first_per_worker(result: Any) -> list[Any]:
    """Each worker's first trial of a search."""
    first: dict[float, Any] = {}
    for record in sorted(result.records, key=lambda r: r.tid):
        first.setdefault(record.log_metrics["pid"], record)
    return list(first.values())


def wait_for(condition: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.spark
def test_keep_alive_rounds_run_on_the_searchs_workers_which_serve_the_next_search_with_its_imports(
    local_spark, keeper, tmp_path, monkeypatch
):
    ns = probe_module(tmp_path)
    first = tune(local_spark, PROBE, gated(ns, tmp_path), 60, monkeypatch, log_metrics=("pid", "had"))
    assert not any(r.log_metrics["had"] for r in first_per_worker(first))
    before = len(keeper.rounds)
    assert wait_for(lambda: len(keeper.rounds) >= before + 3, within=30)
    rounds = list(keeper.rounds)[before:]
    # Every round ran on the search's workers: Spark took them back, which restarts its idle minute.
    assert all(pids_of(first) <= set(r.pids) for r in rounds), (pids_of(first), rounds)
    second = tune(local_spark, PROBE, gated(ns, tmp_path), 60, monkeypatch, log_metrics=("pid", "had"))
    assert pids_of(second) == pids_of(first)  # no fresh worker
    assert all(r.log_metrics["had"] for r in second.records)  # the first search's import is still loaded


def pids_on(spark: Any, tasks: int, seconds: float = 0.0) -> list[int]:
    """The Python workers `tasks` concurrent tasks ran on (each holds its worker for `seconds`)."""

    def run(batches: Any) -> Any:
        import pandas as pd

        for _ in batches:
            pass
        time.sleep(seconds)
        yield pd.DataFrame({"pid": [os.getpid()]})

    frame = spark.range(tasks, numPartitions=tasks).mapInPandas(run, "pid long")
    return [int(row["pid"]) for row in frame.collect()]


@pytest.mark.spark
def test_the_next_search_sends_back_idle_workers_that_did_not_run_the_last_one(
    local_spark, keeper, tmp_path, monkeypatch
):
    keeper.interval = 600.0  # no rounds: this test sets the order of Spark's idle workers itself
    ns = {**probe_module(tmp_path), "slots": 1}
    first = tune(local_spark, PROBE, gated(ns, tmp_path), 60, monkeypatch, log_metrics=("pid", "had"), parallelism=1)
    (warm,) = pids_of(first)
    # Other Spark work on both cores: a second Python worker, which never ran the search's cell.
    cold = set(pids_on(local_spark, 2, seconds=1.0)) - {warm}
    assert len(cold) == 1
    # Spark hands out its idle workers oldest first: one-task jobs until the warm one went to the back.
    for _ in range(3):
        if pids_on(local_spark, 1) == [warm]:
            break
    pool = []
    base = pool_module.SparkPoolExecutor

    class Seen(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            pool.append(self)

    monkeypatch.setattr(pool_module, "SparkPoolExecutor", Seen)
    second = tune(local_spark, PROBE, gated(ns, tmp_path), 60, monkeypatch, log_metrics=("pid", "had"), parallelism=1)
    assert pids_of(second) == {warm}
    assert all(r.log_metrics["had"] for r in second.records)
    assert pool[0].preference.sent_back == 1  # the cold worker, first in Spark's queue, was sent back once


@pytest.mark.spark
def test_a_search_pauses_the_keep_alive_and_cancels_a_round_waiting_for_cores(local_spark, keeper, monkeypatch):
    tune(local_spark, "x = 1.0  # tune: uniform(0, 1)\nloss = x\n", {}, 60, monkeypatch)
    assert wait_for(lambda: len(keeper.rounds) >= 1, within=30)
    # Other Spark work holds both cores: the next round queues behind it.
    blocker = threading.Thread(
        target=lambda: local_spark.sparkContext.parallelize(range(2), 2).map(lambda x: time.sleep(6)).collect()
    )
    blocker.start()
    time.sleep(1.0)
    assert wait_for(lambda: keeper._in_round, within=5)
    started = time.monotonic()
    keeper.search_started()
    assert wait_for(lambda: not keeper._in_round, within=3)  # cancelled, not waiting for the blocker
    assert time.monotonic() - started < 3 and blocker.is_alive()
    rounds = len(keeper.rounds)
    time.sleep(2.0)  # four intervals: no round while a search runs
    assert len(keeper.rounds) == rounds and keeper.running
    keeper.search_ended(60, 2)
    blocker.join()
    assert wait_for(lambda: len(keeper.rounds) > rounds, within=30)  # resumed after the search


@pytest.mark.spark
def test_keep_alive_is_off_with_zero_and_ends_after_keep_warm_minutes(local_spark, keeper, monkeypatch):
    cell = "x = 1.0  # tune: uniform(0, 1)\nloss = x\n"
    tune(local_spark, cell, {}, 60, monkeypatch)
    assert wait_for(lambda: keeper.running and len(keeper.rounds) >= 1, within=30)
    tune(local_spark, cell, {}, 0, monkeypatch)  # turned off: the running keep-alive stops
    assert wait_for(lambda: not keeper.running, within=5)
    rounds = len(keeper.rounds)
    time.sleep(2.0)
    assert len(keeper.rounds) == rounds
    tune(local_spark, cell, {}, 0.05, monkeypatch)  # 3 s
    assert keeper.running
    assert wait_for(lambda: not keeper.running, within=15)
    assert len(keeper.rounds) > rounds


@pytest.mark.spark
def test_large_captured_data_reaches_every_worker_identical_and_private_to_it(local_spark, keeper, monkeypatch):
    big = np.random.default_rng(7).random(3 * MIN_BYTES // 8)
    digest = hashlib.sha256(big.tobytes()).hexdigest()
    cell = (
        "import hashlib, os, time\n"
        "x = 1.0  # tune: uniform(0, 1)\n"
        "same = float(hashlib.sha256(big.tobytes()).hexdigest() == digest)\n"
        "owner = big\n"
        "while getattr(owner, 'base', None) is not None:\n"
        "    owner = owner.base\n"
        "mapped = float(type(getattr(owner, 'obj', owner)).__name__ == 'mmap')  # shared memory, not a copy\n"
        "big[0] = -1.0  # a trial's write stays in its own worker\n"
        "pid = os.getpid()\n"
        "time.sleep(0.3)\n"
        "loss = x\n"
    )
    ns = {"big": big, "digest": digest}
    for shared in (True, False):  # shared memory (workers on this machine), then the socket (any other)
        with monkeypatch.context() as patch:
            if not shared:
                patch.setattr(SharedPayload, "worth_it", staticmethod(lambda packed: False))
            result = tune(local_spark, cell, ns, 60, monkeypatch, max_evals=8, log_metrics=("pid", "same", "mapped"))
        assert len(pids_of(result)) == 2
        assert all(r.log_metrics["same"] for r in first_per_worker(result))  # before any trial wrote to it
        assert {r.log_metrics["mapped"] for r in result.records} == {float(shared)}
    assert big[0] != -1.0  # the driver's array is untouched


def test_a_shared_payload_is_mapped_and_the_rest_streams(tmp_path):
    big = np.arange(2 * MIN_BYTES // 8, dtype=np.float64)
    packed = pack({"big": big, "small": np.ones(10)})
    shared = SharedPayload(packed)
    offer = shared.offer()
    assert offer is not None and offer.offsets[0] is not None
    left, right = socket.socketpair()
    a, b = Connection(left.detach()), Connection(right.detach())
    out: list[Any] = []
    reader = threading.Thread(target=lambda: out.append(receive(b)))
    reader.start()
    sent = send(a, packed, shared=offer)
    reader.join(10)
    assert sent < MIN_BYTES  # the large buffer did not cross the socket
    assert np.array_equal(out[0]["big"], big) and np.array_equal(out[0]["small"], np.ones(10))
    out[0]["big"][0] = 5.0  # writable, copy-on-write
    shared.close()
    assert big[0] == 0.0 and out[0]["big"][0] == 5.0
    assert shared.offer() is None  # closed: later workers get their copy on the socket


def test_a_payload_streams_when_the_offer_cannot_be_mapped():
    big = np.arange(2 * MIN_BYTES // 8, dtype=np.float64)
    packed = pack(big)
    shared = SharedPayload(packed)
    offer = shared.offer()
    assert offer is not None
    shared.close()  # what a worker on another machine sees: no such file
    left, right = socket.socketpair()
    a, b = Connection(left.detach()), Connection(right.detach())
    out: list[Any] = []
    reader = threading.Thread(target=lambda: out.append(receive(b)))
    reader.start()
    assert send(a, packed, shared=offer) >= big.nbytes
    reader.join(10)
    assert np.array_equal(out[0], big)


@pytest.mark.spark
@pytest.mark.slow
def test_after_a_pause_longer_than_sparks_idle_minute_the_workers_are_still_warm(local_spark, tmp_path, monkeypatch):
    k = keeper_of(local_spark)
    assert k.interval == INTERVAL
    ns = probe_module(tmp_path)
    first = tune(local_spark, PROBE, gated(ns, tmp_path), 60, monkeypatch, log_metrics=("pid", "had"))
    time.sleep(80)  # Spark ends workers idle for 60 s (checked every 10 s)
    second = tune(local_spark, PROBE, gated(ns, tmp_path), 60, monkeypatch, log_metrics=("pid", "had"))
    # Earlier tests' idle workers are kept too: the search takes the ones that ran the first search.
    assert pids_of(second) == pids_of(first)
    assert all(r.log_metrics["had"] for r in second.records)


@pytest.mark.spark
@pytest.mark.slow
def test_without_the_keep_alive_spark_ends_the_workers_after_its_idle_minute(local_spark, tmp_path, monkeypatch):
    ns = probe_module(tmp_path)
    first = tune(local_spark, PROBE, gated(ns, tmp_path), 0, monkeypatch, log_metrics=("pid", "had"))
    time.sleep(80)
    second = tune(local_spark, PROBE, gated(ns, tmp_path), 0, monkeypatch, log_metrics=("pid", "had"))
    assert not pids_of(second) & pids_of(first)  # the premise of the test above: fresh workers
    assert not any(r.log_metrics["had"] for r in first_per_worker(second))


@pytest.mark.spark
def test_the_keep_alive_ends_when_the_session_stops(local_spark, keeper, monkeypatch):
    # Last in the module: it stops the module's session.
    tune(local_spark, "x = 1.0  # tune: uniform(0, 1)\nloss = x\n", {}, 60, monkeypatch)
    assert wait_for(lambda: len(keeper.rounds) >= 1, within=30)
    local_spark.stop()
    assert wait_for(lambda: not keeper.running, within=5)


@pytest.mark.spark
@pytest.mark.connect
def test_keep_alive_rounds_run_on_the_search_workers_through_spark_connect(connect_server, monkeypatch):
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(connect_server).getOrCreate()
    try:
        k = keeper_of(spark)
        k.interval = 0.5
        cell = "import os\nx = 1.0  # tune: uniform(0, 1)\npid = os.getpid()\nloss = x\n"
        first = tune(spark, cell, {}, 60, monkeypatch, log_metrics=("pid",))
        assert wait_for(lambda: len(k.rounds) >= 2, within=60)
        assert all(pids_of(first) <= set(r.pids) for r in k.rounds)  # the server's workers, kept warm
        k.search_started()
        k.search_ended(0, 1)
        assert wait_for(lambda: not k.running, within=5)
    finally:
        spark.stop()
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)  # as tests/test_spark_connect.py does
