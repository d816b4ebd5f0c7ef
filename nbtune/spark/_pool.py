"""The Spark backend: a warm pool of long-lived Spark tasks that pull trials from the driver."""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from nbtune.search._executor import ExecutorError
from nbtune.spark._channel import Coordinator
from nbtune.spark._keepwarm import PreferWarm, keeper_of
from nbtune.spark._session import cancel_tag, coordinator_host, default_parallelism, job_tags
from nbtune.spark._slots import slot_job
from nbtune.spark._worker import input_task_function, task_function, task_schema
from nbtune.trial._payload import Packed
from nbtune.trial._records import ReportFn, TrialOutcome, TrialRequest

_SLOT_RETRIES = 3  # consecutive launches of a slot that die before serving any trial
# Seconds past a trial's time limit before its worker is taken to be stuck in native code, which
# the worker's own timer signal cannot interrupt.
_STUCK_GRACE = 5.0
_RECORDING_GRACE = 60.0  # seconds a closing pool waits for workers still sending trials' MLflow recordings
KEEP_WARM_MINUTES = 60.0  # TuneOptions.keep_warm's default, for callers that do not pass the option


class SparkPoolExecutor:
    """P slots, each a one-task Spark job whose Python worker serves trials until the search ends.

    A slot is its own job (not one job of P tasks) so that a worker that dies takes down only
    its slot, which is then relaunched; its trial comes back to the driver as `lost`.
    """

    name = "spark"

    def __init__(
        self,
        spark: Any,
        objective: Packed,
        parallelism: int | None = None,
        report: ReportFn | None = None,
        coordinator: type[Coordinator] = Coordinator,  # nbtune.Pool serves its tasks with a subclass
        keep_warm: float = KEEP_WARM_MINUTES,  # minutes the workers stay warm after this pool ends; 0: off
        slot_rows: Callable[[int], Any] | None = None,  # slot -> the DataFrame its task runs over (the hopper's)
    ) -> None:
        self._spark = spark
        cores = default_parallelism(spark)
        self.slots = parallelism or cores
        self._threads_per_worker = max(1, cores // self.slots)
        self._job = slot_job(spark) if slot_rows is None else None
        secret = self._job.secret if self._job is not None else None
        self._coordinator = coordinator(coordinator_host(spark), objective, report, secret=secret)
        self.tag = f"nbtune-{uuid.uuid4().hex[:12]}"
        self._closing = threading.Event()
        self._keep_warm = keep_warm
        self._slot_rows = slot_rows
        self._warmth = keeper_of(spark)
        self._handed_back = threading.Lock()  # taken once, by whichever of cancel() and close() comes first
        self._warmth.search_started()
        warm = self._warmth.warm_workers()
        self.preference = PreferWarm(warm, limit=2 * self.slots) if warm else None
        if self.preference is not None:
            self._coordinator.welcome = self.preference
        self.launches = 0
        self._slot_threads = [
            threading.Thread(target=self._run_slot, args=(slot,), name=f"nbtune-slot-{slot}", daemon=True)
            for slot in range(self.slots)
        ]
        for thread in self._slot_threads:
            thread.start()

    @property
    def coordinator(self) -> Coordinator:
        """The driver's end of the channel to the slots' workers."""
        return self._coordinator

    @property
    def workers(self) -> dict[int, Any]:
        """Slot -> the worker (host, pid) serving it now."""
        return dict(self._coordinator.workers)

    def _run_slot(self, slot: int) -> None:
        failures = 0
        while not self._closing.is_set():
            before = self._coordinator.workers.get(slot)
            self.launches += 1
            try:
                problem = self._launch(slot)
            except Exception as exc:
                problem = _explain(exc)
            if self._closing.is_set():
                return
            if problem is None:
                continue  # the worker left early without an error: start another
            served = self._coordinator.workers.get(slot) is not before
            failures = 0 if served else failures + 1
            if failures >= _SLOT_RETRIES:
                self._coordinator.errors.put(problem)
                return
            time.sleep(0.2 * failures)  # a crash loop should not spin

    def _launch(self, slot: int) -> str | None:
        """Run one slot's Spark job until its worker leaves; what went wrong, if anything."""
        address = self._coordinator.address
        secret, threads = self._coordinator.secret, self._threads_per_worker
        with contextlib.ExitStack() as stack:
            if self._job is not None:  # classic: the session's one slot job, told its slot on this thread
                job = stack.enter_context(self._job.for_slot(address, slot, threads))
            elif self._slot_rows is None:  # one row that only says "start"
                job = self._spark.range(1, numPartitions=1).mapInPandas(
                    task_function(address, secret, slot, threads), task_schema()
                )
            else:  # the slot's rows, which stay with its worker (relaunched, it reads them again)
                task = input_task_function(address, secret, slot, threads)
                job = self._slot_rows(slot).mapInArrow(task, task_schema())
            stack.enter_context(job_tags(self._spark, self.tag, f"{self.tag}-slot{slot}"))
            rows = job.collect()
        unreachable = str(rows[0]["unreachable"]) if rows else ""
        if not unreachable:
            return None
        return (
            f"the Spark workers cannot connect back to this notebook at {address[0]}:{address[1]} ({unreachable}); "
            "set NBTUNE_COORDINATOR_HOST to an address of this machine that the workers can reach"
        )

    def submit(self, request: TrialRequest) -> None:
        """Queue a trial for the next free worker."""
        self._coordinator.pending.put(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Outcomes streamed back by the workers since the last poll."""
        self._stop_stuck()
        with contextlib.suppress(queue.Empty):
            error = self._coordinator.errors.get_nowait()
            raise ExecutorError(error)
        out: list[TrialOutcome] = []
        with contextlib.suppress(queue.Empty):
            out.append(self._coordinator.outcomes.get(timeout=timeout))
            while True:
                out.append(self._coordinator.outcomes.get_nowait())
        return out

    def _stop_stuck(self) -> None:
        """Fail a trial that outlived its time limit by _STUCK_GRACE and kill its task; the slot restarts."""
        now = time.monotonic()
        for conn, running in list(self._coordinator.running.items()):
            limit = running.request.timeout
            if limit is None or now - running.started < limit + _STUCK_GRACE:
                continue
            if self._coordinator.running.pop(conn, None) is not running:
                continue  # it finished meanwhile
            outcome = TrialOutcome(tid=running.request.tid, status="failed", timed_out=True, host=running.worker.host)
            outcome.duration = now - running.started
            outcome.error = (
                f"trial ran past --trial-timeout ({limit:g} s) and did not stop (stuck in native code?); "
                "its Spark task was killed"
            )
            self._coordinator.outcomes.put(outcome)
            cancel_tag(self._spark, f"{self.tag}-slot{running.worker.slot}")

    def cancel(self) -> None:
        """Stop every running trial: close the channel and cancel the pool's Spark jobs."""
        self._closing.set()
        self._coordinator.close()
        cancel_tag(self._spark, self.tag)
        self._hand_back()

    def close(self) -> None:
        """End the pool without keeping the user waiting: workers exit as the channel closes."""
        self._closing.set()
        self._coordinator.close()
        self._hand_back()
        # Spark takes ~50 ms to wind the jobs down; the result need not wait for that.
        threading.Thread(target=self._reap, name="nbtune-pool-reaper", daemon=True).start()

    def _hand_back(self) -> None:
        """Once: the session's keep-alive takes over the now idle workers (or lets them go, with 0)."""
        if self._handed_back.acquire(blocking=False):
            self._warmth.search_ended(self._keep_warm, self.slots, self._coordinator.served)

    def _reap(self) -> None:
        """Wait briefly for the slot jobs to end, then cancel stragglers (e.g. a slot still queued)."""
        deadline = time.monotonic() + 0.5
        for thread in self._slot_threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        # A worker still sending a finished trial's MLflow recording (a logged model can take a while).
        deadline += _RECORDING_GRACE
        while self._coordinator.receiving and time.monotonic() < deadline:
            time.sleep(0.05)
        for thread in self._slot_threads:
            thread.join(max(0.0, min(0.5, deadline - time.monotonic())))
        if any(t.is_alive() for t in self._slot_threads):
            with contextlib.suppress(Exception):  # the session may have been stopped meanwhile
                cancel_tag(self._spark, self.tag)


def _explain(exc: BaseException) -> str:
    """One line on why the pool's tasks keep failing, with the fix when it is a known one."""
    reason = _spark_error_line(exc)
    if "No module named 'nbtune'" in reason:
        return (
            f"Spark could not run a pool task: {reason}; install nbtune where the Spark workers' Python can "
            "import it (on Databricks: %pip install nbtune), or point PYSPARK_PYTHON at a Python that has it"
        )
    return f"Spark could not run a pool task: {reason}"


def _spark_error_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    for line in lines:  # Spark wraps the Python error deep inside a JVM message
        if "Error:" in line and "py4j" not in line.lower():
            return line.strip()
    return lines[0].strip() if lines else type(exc).__name__
