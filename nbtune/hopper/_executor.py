"""The hopper as an Executor: the search's running trials are the models that hop over the partitions.

The search loop submits configurations and polls for outcomes as with any backend; here a
trial's training is a series of hops (sub-epochs) the HopSchedule places, its epochs are
reported to the ReportHub (so --prune stops models between epochs), and its last step runs
the cell once more with the trained weights, which gives the trial's outcome.
"""

from __future__ import annotations

import contextlib
import queue
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from nbtune.hopper._channel import FinishDone, FinishJob, HopDone, HopJob, HopperCoordinator, HopperTraffic, JobLost
from nbtune.hopper._early_stop import EarlyStop
from nbtune.hopper._frame import FramePlan
from nbtune.hopper._messages import (
    CallbackStates,
    FinishRequest,
    FitSpec,
    HopRequest,
    HopResult,
    ModelState,
    weighted_logs,
)
from nbtune.hopper._runner import HopperRunner
from nbtune.hopper._schedule import Hop, HopSchedule
from nbtune.search._executor import ExecutorError
from nbtune.trial._payload import pack
from nbtune.trial._records import ReportFn, TrialOutcome, TrialRequest

MODELS_PER_WORKER = 2  # models training together per worker when --parallelism does not say


@dataclass
class _Training:
    """A model on its way through its epochs, as the driver tracks it between hops."""

    request: TrialRequest
    started: float
    state: ModelState | None = None
    spec: FitSpec | None = None
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch logs, as Keras' History
    partial: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # this epoch's hops: (rows, logs)
    stopper: EarlyStop | None = None
    best: float | None = None  # the best --metric it reported (a pruned model's value)
    output: str = ""
    host: str = ""  # where its last hop ran
    callbacks: CallbackStates | None = None  # its Keras callbacks' state, as its last hop left it


class HopperExecutor:
    """Models x partitions on the warm pool: `slots` models train together over `workers` partitions.

    By default twice as many models as workers train together: with only as many, a worker whose
    model finished its sub-epoch early waits for the slower one to free the next partition.
    """

    name = "hopper"

    def __init__(
        self,
        spark: Any,
        runner: HopperRunner,
        resident: list[dict[str, Any]] | FramePlan,
        report: ReportFn | None,
        *,
        metric: str,
        mode: str,
        models: int | None = None,
    ) -> None:
        """Send each slot's worker its partition of the --data arrays, or have each slot's task read its rows."""
        from nbtune.spark._pool import SparkPoolExecutor

        partitions: list[dict[str, Any]] | None = None
        slot_rows: Callable[[int], Any] | None = None
        if isinstance(resident, FramePlan):
            self.workers, slot_rows = len(resident.slot_rows), resident.slot
        else:
            self.workers, partitions = len(resident), resident
        self.slots = models or MODELS_PER_WORKER * self.workers
        self.schedule = HopSchedule(self.workers)
        self._report, self._metric, self._mode = report, metric, mode
        payload = pack(runner)
        self.payload_bytes = payload.size  # what every worker receives once: the cell, its variables, validation rows
        self._pool = SparkPoolExecutor(spark, payload, self.workers, coordinator=HopperCoordinator, slot_rows=slot_rows)
        self._coordinator = cast(HopperCoordinator, self._pool.coordinator)
        # Packed while the slots' tasks start.
        self._coordinator.start(self.workers, [pack(p) for p in partitions] if partitions is not None else None)
        self._waiting: deque[TrialRequest] = deque()
        self._training: dict[int, _Training] = {}
        self._finishing: dict[int, FinishJob] = {}  # worker -> the finish running on it
        self._drop: dict[int, list[int]] = {w: [] for w in range(self.workers)}  # models each worker may forget
        self._outcomes: list[TrialOutcome] = []

    @property
    def traffic(self) -> HopperTraffic:
        """Bytes sent to and received from the workers so far."""
        return self._coordinator.traffic

    def submit(self, request: TrialRequest) -> None:
        """A new configuration: it joins the schedule at the start of its first epoch."""
        self._waiting.append(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Place hops on free workers, then take what came back (waiting up to `timeout` for something)."""
        with contextlib.suppress(queue.Empty):
            raise ExecutorError(self._coordinator.errors.get_nowait())
        self._expire()
        self._dispatch()
        deadline = time.monotonic() + timeout
        while not self._outcomes:
            try:
                event = self._coordinator.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self._handle(event)
            with contextlib.suppress(queue.Empty):
                while True:
                    self._handle(self._coordinator.events.get_nowait())
            self._dispatch()
        outcomes, self._outcomes = self._outcomes, []
        return outcomes

    def _expire(self) -> None:
        """Models past their --trial-timeout leave (a hop they are on ends on its own; its result is dropped)."""
        now = time.monotonic()
        for tid, training in list(self._training.items()):
            limit = training.request.timeout
            if limit is None or now - training.started < limit or tid in self._finishing_tids():
                continue
            self._leave(tid)
            del self._training[tid]
            outcome = TrialOutcome(
                tid=tid, status="failed", timed_out=True, step=len(next(iter(training.history.values()), []))
            )
            outcome.error = f"the model trained past its time limit ({limit:g} s) and was stopped between hops"
            outcome.duration, outcome.output = now - training.started, training.output
            self._outcomes.append(outcome)

    def _finishing_tids(self) -> set[int]:
        return {job.request.tid for job in self._finishing.values()}

    def _dispatch(self) -> None:
        while self._waiting:
            request = self._waiting.popleft()
            self._training[request.tid] = _Training(request, time.monotonic())
            self.schedule.add(request.tid)
        for hop in self.schedule.assign(set(range(self.workers)) - set(self._finishing)):
            training = self._training[hop.model]
            drop, self._drop[hop.worker] = self._drop[hop.worker], []
            hop_request = HopRequest(
                hop.model,
                training.request.params,
                training.state,
                hop.last,
                drop,
                epoch=hop.epoch,
                first=not training.partial,
                callbacks=training.callbacks,
                partial=training.partial if hop.last else [],
            )
            self._coordinator.inboxes[hop.worker].put(HopJob(hop, pack(hop_request)))

    def _handle(self, event: HopDone | FinishDone | JobLost) -> None:
        if isinstance(event, HopDone):
            self._hopped(event.hop, event.result)
        elif isinstance(event, FinishDone):
            del self._finishing[event.job.worker]
            training = self._training.pop(event.outcome.tid, None)
            if training is not None:  # the whole training counts, not only the last run of the cell
                event.outcome.duration = time.monotonic() - training.started
                event.outcome.output = training.output + event.outcome.output
            self._outcomes.append(event.outcome)
        elif isinstance(event.job, HopJob):
            self.schedule.lost(event.job.hop)  # the model goes again from its last hop
        else:
            self._coordinator.inboxes[event.job.worker].put(event.job)  # its relaunched worker finishes it

    def _hopped(self, hop: Hop, result: HopResult) -> None:
        training = self._training.get(hop.model)
        completed_epoch = self.schedule.done(hop)
        if training is None:
            return  # it left meanwhile (cancelled)
        training.output += result.output
        training.host = result.host
        if not result.ok:
            self._fail(training, result)
            return
        if result.spec is not None:
            training.spec = result.spec
            self.schedule.set_epochs(hop.model, result.spec.epochs)
            training.stopper = EarlyStop(result.spec.stop) if result.spec.stop is not None else None
        training.state = result.state
        if result.callbacks is not None:
            training.callbacks = result.callbacks
        training.partial.append((result.rows, result.logs))
        if completed_epoch:
            self._epoch_end(hop, training, result)

    def _epoch_end(self, hop: Hop, training: _Training, result: HopResult) -> None:
        """Report the epoch; then prune, stop early, finish or go on."""
        spec = cast(FitSpec, training.spec)
        # The logs the model's callbacks saw on its worker (they may add some, e.g. learning_rate), or the same.
        logs = result.epoch_logs or {**weighted_logs(training.partial), **result.val_logs}
        training.partial = []
        for name, value in logs.items():
            training.history.setdefault(name, []).append(value)
        epoch = self.schedule.epoch_of(hop.model)  # epochs completed, 1-based step of this report
        metric = logs.get(self._metric)
        if metric is not None and (
            training.best is None or (metric < training.best if self._mode == "min" else metric > training.best)
        ):
            training.best = metric
        early = training.stopper is not None and training.stopper.stop(epoch - 1, logs, training.state)
        stopped = early or result.stop  # EarlyStopping here, or a callback on the worker set stop_training
        final = epoch >= spec.epochs or stopped
        pruned = self._report is not None and self._report(hop.model, epoch, logs) and not final
        if pruned:
            self._leave(hop.model)
            outcome = TrialOutcome(tid=hop.model, status="pruned", value=training.best, step=epoch, host=training.host)
            outcome.duration, outcome.output = time.monotonic() - training.started, training.output
            self._training.pop(hop.model, None)
            self._outcomes.append(outcome)
        elif final:
            self._leave(hop.model)
            state = training.state
            if early and training.stopper is not None and training.stopper.rule.restore_best:
                state = training.stopper.best_state
            request = training.request
            finish = FinishRequest(
                tid=request.tid,
                params=request.params,
                timeout=request.timeout,
                attempt=request.attempt,
                state=cast(ModelState, state),
                history=training.history,
                epochs=spec.epochs,
            )
            job = FinishJob(hop.worker, finish)  # where the model just was: that worker is free now
            self._finishing[hop.worker] = job
            self._coordinator.inboxes[hop.worker].put(job)

    def _fail(self, training: _Training, result: HopResult) -> None:
        tid = training.request.tid
        self._leave(tid)
        self._training.pop(tid, None)
        outcome = TrialOutcome(
            tid=tid, status="failed", error=result.error, traceback=result.traceback, host=result.host
        )
        outcome.duration, outcome.output = time.monotonic() - training.started, training.output
        self._outcomes.append(outcome)

    def _leave(self, tid: int) -> None:
        self.schedule.remove(tid)
        for drops in self._drop.values():
            drops.append(tid)

    def cancel(self) -> None:
        """Stop every model now: close the channel and cancel the Spark jobs."""
        self._waiting.clear()
        self._pool.cancel()

    def close(self) -> None:
        """End the workers' tasks (they exit as the channel closes)."""
        self._pool.close()
