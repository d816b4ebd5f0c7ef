"""The Spark backend on a real local[2] session: the warm pool, failures, timeouts, cancel, faults."""

from __future__ import annotations

import _thread
import os
import socket
import threading
import time
import warnings
from multiprocessing.connection import AuthenticationError, Client

import pytest
from spark_fixtures import CancelAfter, active_jobs, local_spark  # noqa: F401 - fixture

import nbtune
import nbtune.spark._pool
from nbtune import UsageError
from nbtune.spark._channel import Coordinator
from nbtune.spark._slots import SlotJob, slot_job
from nbtune.spark._worker import task_function, task_schema
from nbtune.trial._payload import pack, receive
from nbtune.trial._records import TrialOutcome

pytestmark = pytest.mark.spark

SLEEPY = "import time\nx = 1.0  # tune: uniform(0, 1)\ntime.sleep(nap)\nloss = x\n"


def spark_tune(spark, cell, ns=None, **options):
    options.setdefault("quiet", True)
    options.setdefault("mlflow", False)
    return nbtune.tune(cell, {"spark": spark, **(ns or {})}, backend="spark", **options)


def test_results_have_the_same_shape_as_the_local_backend(local_spark):
    cell = "a = 1  # tune: randint(0, 5)\nb = 'x'  # tune: choice('x', 'y')\nprint('hi', a)\nacc = a\nloss = -acc\n"
    on_spark = spark_tune(local_spark, cell, max_evals=6, log_metrics="acc", seed=1)
    local = nbtune.tune(cell, max_evals=6, log_metrics="acc", seed=1, quiet=True, mlflow=False, backend="local")
    assert list(on_spark.to_pandas().columns) == list(local.to_pandas().columns)
    assert on_spark.backend == "spark" and on_spark.parallelism == 2
    assert {r.status for r in on_spark.records} == {"ok"} and len(on_spark.trials.trials) == 6
    assert all(r.output == f"hi {r.params['a']}\n" for r in on_spark.records)  # worker stdout comes back
    assert all(isinstance(r.params["a"], int) and r.params["b"] in ("x", "y") for r in on_spark.records)


def test_trials_run_in_parallel_on_warm_workers_that_keep_their_state(local_spark):
    cell = "import os, time\nx = 1.0  # tune: uniform(0, 1)\ntime.sleep(0.3)\npid = os.getpid()\nloss = x\n"
    result = spark_tune(local_spark, cell, max_evals=10, log_metrics="pid")
    pids = {r.log_metrics["pid"] for r in result.records}
    assert len(pids) == 2 and os.getpid() not in pids  # two long-lived workers served all ten trials


def test_notebook_variables_are_shipped_once_per_worker_not_per_trial(local_spark, tmp_path):
    log = tmp_path / "unpickled.log"

    class Counted:
        def __init__(self, path):
            self.path = str(path)

        def __setstate__(self, state):
            self.__dict__.update(state)
            with open(self.path, "a") as f:
                f.write(f"{os.getpid()}\n")

    cell = "import os, time\nx = 1.0  # tune: uniform(0, 1)\nbig = data.path\ntime.sleep(0.2)\n"
    cell += "pid = os.getpid()\nloss = x\n"
    result = spark_tune(local_spark, cell, {"data": Counted(log)}, max_evals=12, log_metrics="pid")
    assert len(result.records) == 12
    serving = {int(r.log_metrics["pid"]) for r in result.records}
    unpickled_in = [int(line) for line in log.read_text().splitlines()]
    assert sorted(unpickled_in) == sorted(serving)  # once in each worker that ran trials, never per trial


def test_each_worker_limits_numeric_threads_to_its_share_of_the_cores(local_spark):
    cell = "import os\nx = 1.0  # tune: uniform(0, 1)\nthreads = int(os.environ['OMP_NUM_THREADS'])\nloss = x\n"
    result = spark_tune(local_spark, cell, max_evals=2, log_metrics="threads")
    assert {r.log_metrics["threads"] for r in result.records} == {1}  # 2 cores, 2 slots


def test_a_failing_trial_on_a_worker_is_recorded_with_its_traceback(local_spark):
    cell = "x = 1.0  # tune: uniform(0, 1)\nif x > 0.5:\n    raise ValueError('too big')\nloss = x\n"
    result = spark_tune(local_spark, cell, max_evals=12, seed=2)
    failed = [r for r in result.records if r.status == "failed"]
    assert failed and len(result.records) == 12
    assert failed[0].error == "line 3: ValueError: too big"
    assert "raise ValueError('too big')" in failed[0].traceback


def test_trial_timeout_ends_one_trial_on_a_worker_and_the_search_goes_on(local_spark):
    cell = "import time\nx = 1.0  # tune: uniform(0, 1)\nif x > 0.4:\n    time.sleep(60)\nloss = x\n"
    result = spark_tune(local_spark, cell, max_evals=10, trial_timeout=1, seed=5)
    slow = [r for r in result.records if r.params["x"] > 0.4]
    assert slow and all(r.status == "failed" and "trial-timeout" in r.error for r in slow)
    assert len(result.records) == 10


def test_a_trial_stuck_where_the_timer_cannot_reach_is_killed_and_the_search_goes_on(local_spark):
    cell = (
        "import signal, time\n"
        "x = 1.0  # tune: uniform(0, 1)\n"
        "if x > 0.6:\n"
        "    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # like native code that never yields\n"
        "    time.sleep(120)\n"
        "loss = x\n"
    )
    result = spark_tune(local_spark, cell, max_evals=8, trial_timeout=1, seed=5)
    stuck = [r for r in result.records if r.params["x"] > 0.6]
    assert stuck and len(result.records) == 8
    assert all(r.status == "failed" and "did not stop" in r.error and r.duration < 60 for r in stuck)
    assert all(r.status == "ok" for r in result.records if r.params["x"] <= 0.6)


def test_what_native_code_prints_on_a_worker_comes_back_with_the_trial(local_spark):
    cell = (
        "import ctypes, os\n"
        "x = 1.0  # tune: uniform(0, 1)\n"
        "print('from python')\n"
        "os.write(2, b'from fd 2\\n')\n"
        "ctypes.CDLL(None).printf(b'from C printf\\n')\n"
        "loss = x\n"
    )
    result = spark_tune(local_spark, cell, max_evals=2)
    for record in result.records:
        assert "from python" in record.output and "from fd 2" in record.output and "from C printf" in record.output


def test_timeout_stops_the_spark_jobs_and_keeps_finished_trials(local_spark):
    result = spark_tune(local_spark, SLEEPY, {"nap": 0.4}, max_evals=200, timeout=4)
    assert result.stop_reason == "timeout"
    assert sum(r.status == "ok" for r in result.records) >= 4
    assert active_jobs(local_spark, within=1) == []


def test_cancel_stops_the_search_within_seconds_and_the_next_search_works(local_spark):
    canceller = CancelAfter(3)
    result = nbtune.tune(
        SLEEPY,
        {"spark": local_spark, "nap": 1.0},
        backend="spark",
        max_evals=50,
        quiet=True,
        mlflow=False,
        listeners=[canceller],
    )
    stopped = time.monotonic() - canceller.cancelled_at
    assert result.stop_reason == "cancelled" and stopped < 5
    assert sum(r.status == "ok" for r in result.records) >= 3
    assert active_jobs(local_spark, within=5) == []
    again = spark_tune(local_spark, SLEEPY, {"nap": 0.05}, max_evals=4)
    assert [r.status for r in again.records] == ["ok"] * 4


def test_a_kernel_interrupt_cancels_the_spark_jobs_and_keeps_finished_trials(local_spark):
    timer = threading.Timer(6.0, _thread.interrupt_main)
    timer.start()
    try:
        result = spark_tune(local_spark, SLEEPY, {"nap": 0.5}, max_evals=500)
    finally:
        timer.cancel()
    assert result.stop_reason == "interrupted"
    assert sum(r.status == "ok" for r in result.records) >= 2
    assert active_jobs(local_spark, within=5) == []


def test_a_killed_worker_loses_no_trial_and_the_search_completes(local_spark, tmp_path):
    marker = tmp_path / "killed"
    cell = (
        "import os, time\n"
        "x = 1.0  # tune: uniform(0, 1)\n"
        "if trial_no() == 5 and not os.path.exists(marker):\n"
        "    open(marker, 'w').close()\n"
        "    os.kill(os.getpid(), 9)\n"
        "time.sleep(0.2)\n"
        "loss = x\n"
    )
    counter = tmp_path / "count"

    def trial_no(path=str(counter)):
        with open(path, "a") as f:
            f.write("x")
        with open(path) as f:
            return len(f.read())

    result = spark_tune(local_spark, cell, {"marker": str(marker), "trial_no": trial_no}, max_evals=12)
    assert marker.exists()
    assert len(result.records) == 12 and all(r.status == "ok" for r in result.records)
    assert max(r.attempts for r in result.records) == 2  # the trial the dead worker held ran again


def test_a_variable_that_cannot_be_sent_to_workers_is_a_usage_error_naming_it(local_spark):
    assert active_jobs(local_spark, within=5) == []  # earlier tests' pools wind down in the background
    with pytest.raises(UsageError, match=r"variable 'lock' \(lock\) cannot be sent to the workers"):
        spark_tune(
            local_spark, "x = 1.0  # tune: uniform(0, 1)\nwith lock:\n    loss = x\n", {"lock": threading.Lock()}
        )
    assert active_jobs(local_spark) == []


def test_auto_uses_the_active_session_and_its_parallelism(local_spark):
    result = nbtune.tune(SLEEPY, {"nap": 0.01}, max_evals=3, quiet=True, mlflow=False)  # no `spark` variable
    assert result.backend == "spark" and result.parallelism == 2


def test_a_finished_search_ends_its_jobs_by_itself_and_keeps_sparks_python_workers(local_spark):
    cell = "import os\nx = 1.0  # tune: uniform(0, 1)\npid = os.getpid()\nloss = x\n"
    result = spark_tune(local_spark, cell, max_evals=6, log_metrics="pid")
    assert active_jobs(local_spark, within=3) == []  # the workers left as the channel closed
    for pid in {int(r.log_metrics["pid"]) for r in result.records}:
        os.kill(pid, 0)  # still alive for Spark to reuse (warm imports); a cancelled task's worker is killed


def test_every_slot_of_every_search_starts_from_the_sessions_one_slot_job(local_spark, monkeypatch):
    # Built and planned once per session (a slot's task then starts ~35 ms sooner); the slot is told per launch.
    told: list[tuple[int, int, int]] = []
    original = SlotJob.for_slot

    def for_slot(self, address, slot, threads):
        told.append((id(self), slot, threads))
        return original(self, address, slot, threads)

    monkeypatch.setattr(SlotJob, "for_slot", for_slot)
    for _ in range(2):
        result = spark_tune(local_spark, SLEEPY, {"nap": 0.01}, max_evals=4)
        assert {r.status for r in result.records} == {"ok"}
    job = slot_job(local_spark)
    assert job is not None and {t[0] for t in told} == {id(job)}
    assert {t[1:] for t in told} == {(0, 1), (1, 1)} and len(told) >= 4  # each slot once a search, or more
    assert local_spark.sparkContext.getLocalProperty("nbtune.pool") is None  # this thread's jobs are not told


def test_a_worker_that_cannot_reach_the_driver_ends_its_task_quietly_and_says_why(local_spark):
    with socket.socket() as probe:  # a port nobody listens on: what a search that already ended looks like
        probe.bind(("127.0.0.1", 0))
        gone = probe.getsockname()
    rows = local_spark.range(1, numPartitions=1).mapInPandas(task_function(gone, b"s", 0, 1), task_schema()).collect()
    assert rows[0]["trials"] == 0 and "ConnectionRefusedError" in rows[0]["unreachable"]


def test_workers_that_cannot_connect_back_give_a_usage_error_naming_the_fix(local_spark, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        gone = probe.getsockname()
    original = SlotJob.for_slot
    monkeypatch.setattr(
        SlotJob, "for_slot", lambda self, _address, *args: original(self, gone, *args)
    )  # as if a firewall stood between the executors and the notebook
    with pytest.raises(
        UsageError, match=r"cannot connect back to this notebook at 127\.0\.0\.1:.*NBTUNE_COORDINATOR_HOST"
    ):
        spark_tune(local_spark, SLEEPY, {"nap": 0.01}, max_evals=4)
    assert active_jobs(local_spark, within=5) == []


def test_sparktrials_backend_runs_hyperopts_sparktrials_with_the_same_result_shape(local_spark):
    cell = "x = 1.0  # tune: uniform(0, 1)\nk = 1  # tune: choice(1, 2)\nloss = x * k\n"
    with warnings.catch_warnings(record=True) as caught:
        result = nbtune.tune(cell, {"spark": local_spark}, backend="sparktrials", max_evals=4, quiet=True, mlflow=False)
    assert not [w for w in caught if "Tags will not be inherited" in str(w.message)]  # pyspark's noise about hyperopt
    assert result.backend == "sparktrials" and len(result.records) == 4
    assert {r.params["k"] for r in result.records} <= {1, 2}
    assert list(result.to_pandas().columns)[:4] == ["trial", "status", "loss", "duration"]


def test_sparktrials_starts_from_the_cells_values_with_start_from_cell(local_spark):
    cell = "x = 0.25  # tune: uniform(0, 1)\nk = 2  # tune: choice(1, 2)\nloss = x * k\n"
    ns = {"spark": local_spark}
    result = nbtune.tune(cell, ns, backend="sparktrials", max_evals=3, start_from_cell=True, quiet=True, mlflow=False)
    first, *rest = result.records
    assert first.params == {"x": 0.25, "k": 2} and all(r.params["x"] != 0.25 for r in rest)


def test_a_grid_search_on_sparktrials_runs_every_point_once(local_spark):
    cell = "k = 1  # tune: choice(1, 2, 3)\nm = 0  # tune: randint(0, 2)\nloss = k + m\n"
    result = nbtune.tune(cell, {"spark": local_spark}, backend="sparktrials", algo="grid", quiet=True, mlflow=False)
    assert sorted((r.params["k"], r.params["m"]) for r in result.records) == [(k, m) for k in (1, 2, 3) for m in (0, 1)]


def test_the_channel_refuses_a_client_without_the_secret_and_takes_no_results_from_it():
    coordinator = Coordinator("127.0.0.1", pack("objective"))
    try:
        with pytest.raises((AuthenticationError, EOFError, ConnectionError)):
            Client(coordinator.address, family="AF_INET", authkey=b"not the secret")
        import pickle

        forged = pickle.dumps(TrialOutcome(tid=0, status="ok", value=-1e9))
        with socket.create_connection(coordinator.address) as raw:
            raw.sendall(len(forged).to_bytes(4, "big") + forged)
            time.sleep(0.5)
        deadline = time.monotonic() + 5
        while coordinator.refused < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert coordinator.refused == 2
        assert coordinator.outcomes.empty() and coordinator.workers == {}
        ok = Client(coordinator.address, family="AF_INET", authkey=coordinator.secret)
        ok.send({"slot": 0, "host": "h", "pid": 1})
        assert receive(ok) == "objective"  # the real secret is let in
        ok.close()
    finally:
        coordinator.close()


def test_the_channel_stops_listening_when_the_search_ends():
    coordinator = Coordinator("127.0.0.1", pack("x"))
    coordinator.close()
    with pytest.raises(OSError):
        Client(coordinator.address, family="AF_INET", authkey=coordinator.secret)


NO_JAVA_SCRIPT = """
import warnings, nbtune
cell = "x = 1.0  # tune: uniform(0, 1)\\nloss = x\\n"
try:
    nbtune.tune(cell, backend="spark", max_evals=2, quiet=True, mlflow=False)
except nbtune.UsageError as exc:
    print("SPARK-ERROR:", exc)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = nbtune.tune(cell, backend="auto", max_evals=2, quiet=True, mlflow=False)
print("AUTO-BACKEND:", result.backend, len(result.records))
print("AUTO-WARNING:", [str(w.message) for w in caught if "nbtune" in str(w.message)][:1])
"""


def test_without_java_spark_gives_a_clear_error_and_auto_falls_back_to_in_process(tmp_path):
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME")}
    env["JAVA_HOME"] = str(tmp_path / "no-java")
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not os.path.exists(f"{p}/java"))
    out = subprocess.run(
        [sys.executable, "-c", NO_JAVA_SCRIPT], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    ).stdout
    error = next(line for line in out.splitlines() if line.startswith("SPARK-ERROR:"))
    assert "Spark could not start" in error and "Java 17" in error and "--backend local" in error
    assert "AUTO-BACKEND: local 2" in out
    assert "running trials in this process instead" in out


# -- pruning on the pool: reports and decisions travel over the channel ---------------------------


def test_keras_trials_on_the_pool_report_every_epoch_and_asha_and_median_prune_them(local_spark):
    from test_pruning import KERAS

    for prune in ("asha", "median"):
        result = spark_tune(local_spark, KERAS, max_evals=10, metric="val_loss", prune=prune, seed=3)
        assert result.backend == "spark"
        ok = [r for r in result.records if r.status == "ok"]
        pruned = [r for r in result.records if r.status == "pruned"]
        assert ok and pruned, (prune, result.counts())
        assert all(len(r.curve) == 9 for r in ok) and all(len(r.curve) < 9 for r in pruned)
        assert all({"loss", "val_loss"} <= set(r.curve[0][1]) for r in result.records)


def test_a_plain_loop_prunes_on_the_pool_and_the_slot_takes_the_next_trial(local_spark):
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport nbtune, time\nfor s in range(1, 10):\n"
    cell += "    time.sleep(0.02)\n    nbtune.report(loss=x + 1.0 / s)\nloss = x + 1 / 9\n"
    result = spark_tune(local_spark, cell, max_evals=24, prune="asha", seed=1)
    counts = result.counts()
    assert counts["pruned"] >= 5 and counts["ok"] + counts["pruned"] == 24
    assert result.best_trial.status == "ok"
    assert result.curves().groupby("trial").step.max().max() == 9
