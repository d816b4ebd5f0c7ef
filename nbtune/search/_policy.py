"""When a search stops and whether it failed: one policy for every backend."""

from __future__ import annotations

import threading
import time
from typing import Literal

from nbtune._errors import SearchFailed
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.trial._records import TrialOutcome

StopReason = Literal[
    "completed", "exhausted", "timeout", "cancelled", "interrupted", "error", "max-failures", "failing", "early-stop"
]
# Stops after which the trials still running are abandoned rather than awaited.
ABANDON: frozenset[StopReason] = frozenset({"timeout", "cancelled", "interrupted", "error", "max-failures", "failing"})


class StopPolicy:
    """Decides, from the finished trials, whether a search goes on, and raises when it failed."""

    def __init__(
        self, options: TuneOptions, result: TuneResult, slots: int, cancel: threading.Event, deadline: float | None
    ) -> None:
        self.options, self.result, self.slots = options, result, slots
        self.cancel, self.deadline = cancel, deadline
        self.fatal: TrialOutcome | None = None  # the first trial that found a mistake in the cell
        self.executor_error: str | None = None
        # Counted as records arrive (records are only appended), so a poll costs the same at 10,000 trials.
        self._seen = self._failed = self._ok = 0
        self._best: tuple[float, int] | None = None  # (signed value, trial number), as TuneResult.best_trial ranks
        self._best_ok = 0  # the best trial's place among the ok trials

    def saw(self, outcome: TrialOutcome) -> None:
        """Note a finished trial's outcome (a fatal one stops the search)."""
        if outcome.fatal and self.fatal is None:
            self.fatal = outcome

    def reason(self) -> StopReason | None:
        """Why the search must stop now, or None to go on."""
        records, opts = self.result.records, self.options
        self._count_new()
        failed = self._failed
        if self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "timeout"
        if self.fatal is not None or self.executor_error is not None:
            return "error"
        if opts.max_failures is not None and failed >= opts.max_failures:
            return "max-failures"
        # A cell that fails every time is broken, not unlucky: stop early and say why.
        if opts.max_failures is None and failed and failed == len(records) >= max(3, self.slots):
            return "failing"
        if opts.early_stop is not None and self._since_best() >= opts.early_stop:
            return "early-stop"
        return None

    def _count_new(self) -> None:
        """Take in the records finished since the last look."""
        sign = 1.0 if self.result.mode == "min" else -1.0
        for record in self.result.records[self._seen :]:
            if record.status == "failed":
                self._failed += 1
            elif record.status == "ok":
                self._ok += 1
                if record.value is not None:
                    key = (sign * record.value, record.number)
                    if self._best is None or key < self._best:
                        self._best, self._best_ok = key, self._ok - 1
        self._seen = len(self.result.records)

    def _since_best(self) -> int:
        """Finished ok trials since the best one."""
        return 0 if self._best is None else self._ok - 1 - self._best_ok

    def raise_if_failed(self) -> None:
        """Raise SearchFailed (carrying the result) if the search failed rather than stopped."""
        result = self.result
        if self.executor_error is not None:
            raise SearchFailed(self.executor_error, result)
        if self.fatal is not None:
            raise SearchFailed(self.fatal.fatal or "the cell is wrong", result)
        failed = [r for r in result.records if r.status == "failed"]
        if failed and not any(r.status == "ok" for r in result.records):
            first = min(failed, key=lambda r: r.number)
            raise SearchFailed(f"every trial failed; the first with: {first.error}", result)
