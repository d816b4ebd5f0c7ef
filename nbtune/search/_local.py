"""The local backend: trials run one at a time in this process."""

from __future__ import annotations

import threading
import time
from collections import deque

from nbtune.trial._objective import Objective
from nbtune.trial._records import ReportFn, TrialOutcome, TrialRequest
from nbtune.trial._report import Reporter
from nbtune.trial._timeouts import TrialCancelled, raise_in_thread


class LocalExecutor:
    """Runs each trial in the notebook's own process, in the calling thread."""

    name = "local"
    slots = 1

    def __init__(self, objective: Objective, report: ReportFn | None = None) -> None:
        self._objective, self._report = objective, report
        self._queue: deque[TrialRequest] = deque()
        self._lock = threading.Lock()
        self._trial_thread: int | None = None  # the thread running a trial right now

    def submit(self, request: TrialRequest) -> None:
        """Queue a trial; poll() runs it."""
        self._queue.append(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Run the next queued trial to completion and return its outcome."""
        if not self._queue:
            time.sleep(min(timeout, 0.05))
            return []
        request = self._queue.popleft()
        try:
            with self._lock:
                self._trial_thread = threading.get_ident()
            outcome = self._objective.run(request, self._reporter(request.tid))
            with self._lock:  # cancel() only interrupts in between, so TrialCancelled lands in this block
                self._trial_thread = None
        except TrialCancelled:
            self._trial_thread = None
            return [TrialOutcome(tid=request.tid, status="cancelled", error="stopped: cancelled")]
        return [outcome]

    def _reporter(self, tid: int) -> Reporter | None:
        report = self._report
        return None if report is None else lambda step, metrics: report(tid, step, metrics)

    def cancel(self) -> None:
        """Drop queued trials and stop the running one (when called from another thread, e.g. a Cancel click)."""
        self._queue.clear()
        with self._lock:
            if self._trial_thread is not None and self._trial_thread != threading.get_ident():
                raise_in_thread(self._trial_thread, TrialCancelled)

    def close(self) -> None:
        """Nothing to release."""
        self._queue.clear()
