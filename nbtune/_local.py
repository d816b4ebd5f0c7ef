"""The local backend: trials run one at a time in this process."""

from __future__ import annotations

import time
from collections import deque

from nbtune._objective import Objective
from nbtune._records import TrialOutcome, TrialRequest


class LocalExecutor:
    """Runs each trial in the notebook's own process, in the calling thread."""

    name = "local"
    slots = 1

    def __init__(self, objective: Objective) -> None:
        self._objective = objective
        self._queue: deque[TrialRequest] = deque()

    def submit(self, request: TrialRequest) -> None:
        """Queue a trial; poll() runs it."""
        self._queue.append(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Run the next queued trial to completion and return its outcome."""
        if not self._queue:
            time.sleep(min(timeout, 0.05))
            return []
        return [self._objective.run(self._queue.popleft())]

    def cancel(self) -> None:
        """Drop queued trials (a running one is interrupted by the caller's KeyboardInterrupt)."""
        self._queue.clear()

    def close(self) -> None:
        """Nothing to release."""
        self._queue.clear()
