"""The driver's end of `nbtune.report`: keep every trial's curve and ask the scheduler about each report.

Executors call `report` from their own threads (the local trial thread, the pool's connection
threads); the search loop drains what arrived and tells the listeners on the notebook thread.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable

from nbtune._options import TuneOptions
from nbtune.search._history import loss_of
from nbtune.search.schedulers._base import Scheduler, make_scheduler


class ReportHub:
    """Curves of every trial, and prune decisions from the `--prune` scheduler."""

    def __init__(self, options: TuneOptions) -> None:
        self.metric, self.mode = options.metric, options.mode
        self.scheduler: Scheduler | None = make_scheduler(
            options.prune, options.min_steps, options.reduction_factor, options.max_steps
        )
        self._lock = threading.Lock()
        self._curves: dict[int, list[tuple[int, dict[str, float]]]] = {}
        self._pruned: set[int] = set()
        self._fresh: list[tuple[int, int, dict[str, float]]] = []
        self.metric_seen = False  # a report carried --metric (else pruning has nothing to compare)
        self._names: set[str] = set()  # what the reports carried, for the warning when --metric was not among them
        self.reported = False
        self.on_own_thread: Callable[[], None] | None = None  # the search loop's, to tell listeners at once
        self._owner = threading.get_ident()

    def report(self, tid: int, step: int, metrics: dict[str, float]) -> bool:
        """Keep one report of trial `tid`; True if the trial is to be pruned."""
        prune = self._decide(tid, step, metrics)
        tell = self.on_own_thread
        if tell is not None and threading.get_ident() == self._owner:
            tell()  # a trial running on the notebook's thread (local backend): the loop is not polling
        return prune

    def _decide(self, tid: int, step: int, metrics: dict[str, float]) -> bool:
        with self._lock:
            self.reported = True
            self._curves.setdefault(tid, []).append((step, metrics))
            self._fresh.append((tid, step, metrics))
            if tid in self._pruned:
                return True
            value = metrics.get(self.metric)
            if value is None and not self.metric_seen:
                self._names.update(metrics)
            if value is None or self.scheduler is None:
                return False
            self.metric_seen = True
            if self.scheduler.decide(tid, step, loss_of(value, self.mode)):
                self._pruned.add(tid)
                return True
            return False

    def warn_if_unused(self) -> None:
        """One clear warning when --prune had nothing to act on."""
        if self.scheduler is None:
            return
        if not self.reported:
            warnings.warn(
                "nbtune: --prune had no reports to act on: call nbtune.report(...) in the cell, or train with "
                "Keras' model.fit or Spark ML's CrossValidator (they report each epoch or fold unless --no-autoreport)",
                RuntimeWarning,
                stacklevel=3,
            )
        elif not self.metric_seen:
            carried = ", ".join(sorted(self._names))
            warnings.warn(
                f"nbtune: no report carried the metric '{self.metric}' (they carried {carried}), so --prune compared "
                f"nothing: report it, e.g. nbtune.report({self.metric}=...), or name the metric as reported",
                RuntimeWarning,
                stacklevel=3,
            )

    def drain(self) -> list[tuple[int, int, dict[str, float]]]:
        """Reports that arrived since the last call: (tid, step, metrics)."""
        with self._lock:
            fresh, self._fresh = self._fresh, []
        return fresh

    def finish(self, tid: int, completed: bool) -> list[tuple[int, dict[str, float]]]:
        """The whole curve of a trial that ended (kept for a lost worker's trial too)."""
        with self._lock:
            curve = self._curves.pop(tid, [])
            if self.scheduler is not None and curve:
                self.scheduler.finished(tid, curve[-1][0], completed)
        return curve
