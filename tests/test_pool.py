"""nbtune.Pool on a real local[2] session: the multiprocessing.Pool API on the warm pool."""

from __future__ import annotations

import _thread
import os
import re
import threading
import time
import warnings

import numpy as np
import pytest
from spark_fixtures import active_jobs, local_spark  # noqa: F401 - fixture

import nbtune
from nbtune.pool import PoolTerminated, RemoteTraceback, TaskFailed

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def shared(local_spark):
    p = nbtune.Pool(spark=local_spark, progress=False)
    yield p
    p.terminate()


@pytest.fixture
def pool(shared):
    """One pool for the first tests (a warm pool holds its cores until closed, so pools take turns)."""
    return shared


@pytest.fixture
def alone(shared, local_spark):
    """The session with the shared pool closed, for the tests that open their own pools."""
    shared.close()
    shared.join()
    assert active_jobs(local_spark, within=5) == []
    return local_spark


def test_map_keeps_the_order_and_runs_on_the_workers(pool):
    assert pool.processes == 2
    assert pool.map(lambda x: x * x, range(50)) == [x * x for x in range(50)]
    pids = set(pool.map(lambda _: os.getpid(), range(8), chunksize=1))
    assert os.getpid() not in pids
    assert pool.map(abs, []) == []


def test_imap_imap_unordered_starmap_and_apply_async(pool):
    assert list(pool.imap(lambda x: -x, range(7), chunksize=2)) == [0, -1, -2, -3, -4, -5, -6]

    def nap(x):
        time.sleep(3.0 if x == 0 else 0.01)
        return x

    first = next(iter(pool.imap_unordered(nap, range(6), chunksize=1)))
    assert first != 0  # streamed as finished: the slow first task comes last
    assert sorted(pool.imap_unordered(nap, range(6), chunksize=1)) == list(range(6))
    assert pool.starmap(lambda a, b: a - b, [(5, 1), (9, 3)]) == [4, 6]
    result = pool.apply_async(lambda a, k=0: a + k, (1,), {"k": 10})
    assert result.get(timeout=60) == 11 and result.ready() and result.successful()
    seen = []
    pool.map_async(lambda x: x + 1, [1, 2], callback=seen.append).wait(60)
    deadline = time.monotonic() + 5
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == [[2, 3]]


def test_a_task_that_raises_re_raises_its_type_with_the_workers_traceback(pool):
    def check(x):
        if x == 3:
            raise KeyError(f"no {x}")
        return x

    with pytest.raises(KeyError, match="no 3") as info:
        pool.map(check, range(6))
    cause = info.value.__cause__
    assert isinstance(cause, RemoteTraceback)
    assert "On the worker" in str(cause) and 'raise KeyError(f"no {x}")' in str(cause)
    failed = pool.apply_async(check, (3,))
    failed.wait(60)
    assert failed.ready() and not failed.successful()
    with pytest.raises(KeyError):
        failed.get()
    assert pool.map(check, [1, 2]) == [1, 2]  # the pool goes on


def test_an_exception_or_function_that_does_not_travel_still_comes_back_by_name(pool):
    def bad(_):
        class Local(Exception):
            pass

        error = Local("local trouble")
        error.lock = threading.Lock()  # pickles neither by reference nor by value
        raise error

    with pytest.raises(TaskFailed, match="Local: local trouble"):
        pool.map(bad, [1])
    import spark_fixtures  # on the driver's path only: the workers cannot import it

    with pytest.raises(TaskFailed, match="do not load on the worker: ModuleNotFoundError"):
        pool.map(spark_fixtures.wait_for_port, [1])
    assert pool.map(abs, [-3]) == [3]  # the worker that could not load them goes on


def test_what_a_function_captures_is_sent_once_per_worker_not_per_task(pool):
    big = np.arange(1_000_000, dtype=np.float64)  # 8 MB, captured by the function
    before = pool.traffic.bytes_sent, pool.traffic.functions_sent

    def total(i):
        return float(big[i])

    assert pool.map(total, range(40), chunksize=1) == [float(i) for i in range(40)]
    sent = pool.traffic.bytes_sent - before[0]
    assert pool.traffic.functions_sent - before[1] <= 2  # once for each of the two workers
    assert big.nbytes <= sent < 2 * big.nbytes + 1_000_000


def test_a_large_argument_is_sent_once_per_worker(pool):
    big = np.ones(1_000_000)
    before = pool.traffic.bytes_sent
    assert pool.map(lambda a: float(a.sum()), [big] * 20, chunksize=1) == [1e6] * 20
    assert pool.traffic.bytes_sent - before < 2 * big.nbytes + 1_000_000


def test_a_pool_opened_in_a_pool_task_runs_serially_with_one_warning(pool):
    def inner(x):
        import nbtune

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with nbtune.Pool() as nested:
                values = nested.map(lambda y: y * 10, range(x))
                values += nested.map(lambda y: y, range(1))
        return values, [str(w.message) for w in caught]

    values, messages = pool.apply(inner, (3,))
    assert values == [0, 10, 20, 0]
    assert len(messages) <= 1 and all("runs its work serially" in m for m in messages)


def test_bad_input_gives_the_multiprocessing_errors(alone):
    lock = threading.Lock()
    with nbtune.Pool(spark=alone, progress=False) as pool:
        with pytest.raises(TypeError, match="not iterable"):
            pool.map(abs, 5)
        with pytest.raises(TypeError, match=r"cannot send .*<lambda> to the workers: it uses 'lock' \(lock\)"):
            pool.map(lambda x: lock.locked(), range(3))
        assert pool.map(abs, [-1]) == [1]
    with pytest.raises(ValueError, match="Pool not running"):
        pool.map(abs, [1])
    running = nbtune.Pool(spark=alone, progress=False)
    with pytest.raises(ValueError, match="still running"):
        running.join()
    running.terminate()


def test_terminate_stops_the_spark_jobs_mid_map(alone, local_spark):
    pool = nbtune.Pool(spark=local_spark, progress=False)
    pending = pool.map_async(time.sleep, [5.0] * 8, chunksize=1)
    time.sleep(3)  # the slots are running tasks
    pool.terminate()
    assert active_jobs(local_spark, within=5) == []
    with pytest.raises(PoolTerminated):
        pending.get(timeout=5)


def test_ctrl_c_during_map_stops_the_spark_jobs(alone, local_spark):
    pool = nbtune.Pool(spark=local_spark, progress=False)
    pool.map(abs, [1, 2])  # the slots are up
    timer = threading.Timer(2.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            pool.map(time.sleep, [3.0] * 10, chunksize=1)
    finally:
        timer.cancel()
    assert active_jobs(local_spark, within=5) == []
    with pytest.raises(ValueError):
        pool.map(abs, [1])
    with nbtune.Pool(spark=local_spark, progress=False) as again:  # the next pool works
        assert again.map(abs, [-2]) == [2]


def test_a_killed_worker_loses_no_result(alone, local_spark, tmp_path):
    marker = str(tmp_path / "killed")

    def maybe_die(x):
        if x == 5 and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)
        time.sleep(0.05)
        return x

    with nbtune.Pool(spark=local_spark, progress=False) as pool:
        assert pool.map(maybe_die, range(20), chunksize=1) == list(range(20))
    assert os.path.exists(marker)


def test_a_keyed_buffer_is_sent_once_per_peer_within_its_budget():
    from concurrent.futures import ThreadPoolExecutor
    from multiprocessing import Pipe

    from nbtune.pool._keys import BufferKeys
    from nbtune.trial._payload import Held, pack, receive, send

    big, keys = np.arange(300_000, dtype=np.float64), BufferKeys()  # 2.4 MB
    ours, theirs = Pipe()
    cache: dict = {}

    def deliver(obj, held):  # the peer reads while we write: a pipe holds less than the array
        with ThreadPoolExecutor(1) as peer:
            got = peer.submit(receive, theirs, cache)
            sent = send(ours, pack(obj, key=keys), held)
            return sent, got.result(timeout=30)

    held = Held()
    first, _ = deliver((big, 1), held)
    second, (again, _) = deliver((big, 2), held)
    assert first > big.nbytes > 100 * second  # the second send names the array only
    assert np.array_equal(again, big) and not again.flags.writeable  # shared by later tasks: read-only
    small = Held(limit=big.nbytes - 1)  # no room: sent each time, and the peer keeps nothing
    assert deliver(big, small)[0] > big.nbytes and not small.keys


def test_a_long_map_shows_a_text_progress_line_and_progress_false_shows_nothing(alone, local_spark, capsys):
    with nbtune.Pool(spark=local_spark) as pool:
        assert pool.map(time.sleep, [0.25] * 12, chunksize=1) == [None] * 12
        assert pool.map(abs, [-1, -2]) == [1, 2]  # short: no bar
    lines = capsys.readouterr().err.split("\n")
    assert lines[-1] == "" and len(lines) == 2  # one line, redrawn in place, ended when the map ends
    assert re.fullmatch(r"nbtune.Pool map: \[#{20}\] 12/12  \d\d:\d\d", lines[0].rsplit("\r", 1)[-1])
    with nbtune.Pool(spark=local_spark, progress=False) as quiet:
        quiet.map(time.sleep, [0.25] * 12, chunksize=1)
    assert capsys.readouterr().err == ""


def test_in_a_notebook_a_long_map_shows_a_progress_widget_that_ends_full(tmp_path, monkeypatch):
    for leaked in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE"):  # an earlier Spark Connect test's, not the kernel's
        monkeypatch.delenv(leaked, raising=False)
    monkeypatch.setenv("NBTUNE_SPARK_MASTER", "local[2]")
    import nbformat
    from nbclient import NotebookClient

    code = (
        "import time, nbtune\n"
        "with nbtune.Pool() as pool:\n"
        "    pool.map(abs, range(4))  # the slots start\n"
        "    done = pool.map(time.sleep, [0.3] * 16, chunksize=1)\n"
        "print(len(done))"
    )
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(code)]
    NotebookClient(nb, timeout=300, store_widget_state=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in states.values() if m["model_name"] == "IntProgressModel"]
    # The first map shows a bar too when starting Spark's workers makes it last over a second.
    assert [(b["value"], b["bar_style"]) for b in bars if b["max"] == 16] == [(16, "success")]
    labels = [m["state"]["value"] for m in states.values() if m["model_name"] == "LabelModel"]
    assert any(label.startswith("16/16  00:0") for label in labels)
    assert nb.cells[0].outputs[-1]["text"] == "16\n"
