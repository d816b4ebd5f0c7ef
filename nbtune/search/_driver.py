"""The driver backend: trials run on threads of the notebook's process; their Spark jobs use the whole cluster.

For cells that fit Spark ML pipelines (or do any DataFrame work): the cell cannot be shipped to a
worker, so each trial runs here, `slots` at once, like CrossValidator's `parallelism`. Each trial's
jobs carry its own tag (and, on classic Spark, its own FAIR scheduler pool), so a trial past
--trial-timeout, or every trial on Cancel, is stopped by cancelling its jobs and raising in its thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from nbtune.spark._session import cancel_tag, is_connect, job_tags
from nbtune.trial._mlflow_capture import TrialCapture
from nbtune.trial._objective import Objective
from nbtune.trial._output import thread_routing
from nbtune.trial._records import ReportFn, TrialOutcome, TrialRequest
from nbtune.trial._report import Reporter
from nbtune.trial._timeouts import TrialCancelled, TrialTimeout, raise_in_thread

_REAP_EVERY = 0.2  # seconds between cancels of a stopped trial's tag (a CrossValidator thread may start a job)
_REAP_FOR = 30.0  # give up re-cancelling after this long (the thread is stuck outside Spark)
_JOIN_ON_CLOSE = 15.0  # seconds close() waits for stopped trials' threads, so no job outlives the search


class _Unrecorded(TrialCapture):
    """No per-trial MLflow store on the driver: it would swap the process's MLflow URI under the other trials.

    What the cell logs to MLflow itself goes where the notebook's MLflow points.
    """

    def __enter__(self) -> TrialCapture:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        return None


@dataclass(kw_only=True)
class DriverObjective(Objective):
    """The cell's objective, run on driver threads; keeps the best trial's `model` object in memory."""

    _models: dict[int, tuple[float, Any]] = field(default_factory=dict, repr=False, compare=False)
    _models_lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, objective: Objective) -> DriverObjective:
        """The same objective, to run on the driver."""
        values = {f.name: getattr(objective, f.name) for f in dataclasses.fields(Objective) if f.init}
        return cls(**values)

    def _capture(self, name: str) -> TrialCapture:
        return _Unrecorded(name)

    def _read_metrics(self, ns: Any, outcome: TrialOutcome) -> None:
        super()._read_metrics(ns, outcome)
        if outcome.status == "ok" and outcome.value is not None and "model" in ns:
            self._keep(outcome.tid, outcome.value, ns["model"])

    def _keep(self, tid: int, value: float, model: Any) -> None:
        """Keep the models of the best trials so far (ties too): only the best one is asked for."""
        loss = value if self.mode == "min" else -value
        with self._models_lock:
            best = min([loss, *(held for held, _ in self._models.values())])
            self._models[tid] = (loss, model)
            for other in [t for t, (held, _) in self._models.items() if held > best]:
                del self._models[other]

    def model_of(self, tid: int) -> Any:
        """The `model` trial `tid` left, if it is (one of) the best: else None."""
        with self._models_lock:
            kept = self._models.get(tid)
        return kept[1] if kept else None


@dataclass(eq=False)
class _Trial:
    request: TrialRequest
    tag: str
    pool: str
    ident: int | None = None  # the thread running it, once started
    thread: threading.Thread | None = None
    finished: bool = False  # out of the cell: raising in its thread now would hit nbtune's own code
    stopped: str | None = None  # "timeout" or "cancelled"
    timer: threading.Timer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class DriverExecutor:
    """Runs up to `slots` trials at once on driver threads, each one's Spark jobs under its own tag."""

    name = "driver"

    def __init__(self, spark: Any, objective: Objective, slots: int, report: ReportFn | None = None) -> None:
        self.slots = slots
        self._spark, self._objective, self._report = spark, objective, report
        self._search_tag = f"nbtune-{uuid.uuid4().hex[:12]}"  # on every job of the search: cancel() stops all
        self._outcomes: queue.Queue[TrialOutcome] = queue.Queue()
        self._trials: dict[int, _Trial] = {}
        self._pools = [f"nbtune-{n}" for n in range(slots)]  # FAIR pools, reused: a pool per trial would pile up
        self._lock = threading.Lock()
        self._routing: contextlib.ExitStack | None = None

    def submit(self, request: TrialRequest) -> None:
        """Start the trial on its own thread (the search loop submits no more than `slots` at once)."""
        if self._routing is None:  # trials print at the same time: each thread's output to its own trial
            self._routing = contextlib.ExitStack()
            self._routing.enter_context(thread_routing())
        with self._lock:
            pool = self._pools.pop() if self._pools else "nbtune-extra"
            trial = _Trial(request, tag=f"{self._search_tag}-{request.tid}-{request.attempt}", pool=pool)
            self._trials[request.tid] = trial
        trial.thread = threading.Thread(
            target=self._run, args=(trial,), name=f"nbtune-trial-{request.tid}", daemon=True
        )
        trial.thread.start()
        if request.timeout:
            trial.timer = threading.Timer(request.timeout, self._stop, (trial, "timeout"))
            trial.timer.daemon = True
            trial.timer.start()

    def _run(self, trial: _Trial) -> None:
        outcome: TrialOutcome | None = None
        start = time.perf_counter()
        try:
            try:
                with trial.lock:
                    if trial.stopped:
                        return  # stopped before it started (finally: its outcome)
                    trial.ident = threading.get_ident()
                _make_active(self._spark)
                with job_tags(self._spark, self._search_tag, trial.tag), _scheduler_pool(self._spark, trial.pool):
                    # The executor keeps time (its timer also cancels the trial's jobs), not the objective.
                    request = dataclasses.replace(trial.request, timeout=None)
                    outcome = self._objective.run(request, self._reporter(request.tid))
            finally:
                with trial.lock:
                    trial.finished = True
        except (TrialCancelled, TrialTimeout):
            pass  # it landed outside the cell's code: _settle says why the trial ended
        finally:
            if trial.timer is not None:
                trial.timer.cancel()
            self._outcomes.put(self._settle(trial, outcome, time.perf_counter() - start))

    def _reporter(self, tid: int) -> Reporter | None:
        report = self._report
        return None if report is None else lambda step, metrics: report(tid, step, metrics)

    @staticmethod
    def _settle(trial: _Trial, outcome: TrialOutcome | None, duration: float) -> TrialOutcome:
        """The outcome as the search should see it: a stopped trial is cancelled or timed out, whatever it raised."""
        tid = trial.request.tid
        if trial.stopped == "cancelled":
            return TrialOutcome(tid=tid, status="cancelled", error="stopped: cancelled", duration=duration)
        if trial.stopped == "timeout" and (outcome is None or outcome.status != "ok"):
            stopped = TrialOutcome(tid=tid, status="failed", timed_out=True, duration=duration)
            stopped.error = f"TrialTimeout: trial ran past --trial-timeout ({trial.request.timeout:g} s)"
            stopped.output = outcome.output if outcome is not None else ""
            return stopped
        return outcome or TrialOutcome(tid=tid, status="cancelled", error="stopped", duration=duration)

    def _stop(self, trial: _Trial, why: str) -> None:
        """Stop one trial: an exception in its thread, and its Spark jobs cancelled until the thread ends."""
        with trial.lock:
            if trial.finished or trial.stopped:
                return
            trial.stopped = why
            if trial.ident is not None:  # its next Python instruction: when the Spark call it waits on returns
                raise_in_thread(trial.ident, TrialTimeout if why == "timeout" else TrialCancelled)
        self._cancel_jobs(trial.tag)
        threading.Thread(target=self._reap, args=(trial,), name="nbtune-reap", daemon=True).start()

    def _reap(self, trial: _Trial) -> None:
        # A stopped trial may still start a job before its thread sees the exception (e.g. CrossValidator's
        # own threads, which inherit the tag): cancel its tag until the thread is gone, and once after.
        deadline = time.monotonic() + _REAP_FOR
        thread = trial.thread
        while thread is not None and thread.is_alive() and time.monotonic() < deadline:
            thread.join(_REAP_EVERY)
            self._cancel_jobs(trial.tag)
        self._cancel_jobs(trial.tag)

    def _cancel_jobs(self, tag: str) -> None:
        with contextlib.suppress(Exception):  # a session stopped meanwhile has no jobs left to cancel
            cancel_tag(self._spark, tag)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Outcomes of finished trials, waiting up to `timeout` seconds for the first."""
        try:
            done = [self._outcomes.get(timeout=timeout) if timeout > 0 else self._outcomes.get_nowait()]
        except queue.Empty:
            return []
        while True:
            try:
                done.append(self._outcomes.get_nowait())
            except queue.Empty:
                break
        with self._lock:
            for outcome in done:
                trial = self._trials.pop(outcome.tid, None)
                if trial is not None and trial.pool != "nbtune-extra":
                    self._pools.append(trial.pool)
        return done

    def cancel(self) -> None:
        """Stop every running trial: an exception in each thread, every job of the search cancelled."""
        with self._lock:
            running = list(self._trials.values())
        for trial in running:
            self._stop(trial, "cancelled")
        self._cancel_jobs(self._search_tag)

    def close(self) -> None:
        """Stop what still runs, wait for the trials' threads, and give the notebook its output streams back."""
        with self._lock:
            running = [t for t in self._trials.values() if t.thread is not None]
        if running:
            self.cancel()
            deadline = time.monotonic() + _JOIN_ON_CLOSE
            for trial in running:
                assert trial.thread is not None
                trial.thread.join(max(0.0, deadline - time.monotonic()))
        if self._routing is not None:
            self._routing.close()
            self._routing = None

    def running(self) -> list[int]:
        """Trials whose threads still run (for tests and diagnostics)."""
        with self._lock:
            return [tid for tid, t in self._trials.items() if t.thread is not None and t.thread.is_alive()]


def _make_active(spark: Any) -> None:
    """Spark Connect keeps the active session per thread, and pyspark.ml on Connect needs one in the trial's."""
    if is_connect(spark):
        type(spark)._set_default_and_active_session(spark)


@contextlib.contextmanager
def _scheduler_pool(spark: Any, pool: str) -> Iterator[None]:
    """Classic Spark: this thread's jobs go to their own scheduler pool (shared fairly with spark.scheduler.mode=FAIR).

    Spark Connect has no per-thread local properties: the server's scheduler decides.
    """
    if is_connect(spark):
        yield
        return
    sc = spark.sparkContext
    sc.setLocalProperty("spark.scheduler.pool", pool)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sc.setLocalProperty("spark.scheduler.pool", None)
