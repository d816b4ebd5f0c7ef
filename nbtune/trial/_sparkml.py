"""Spark ML's CrossValidator reports on its own: while a trial runs, each finished fold is a step.

`pyspark.ml.tuning` is wrapped once per process, when it is (or gets) imported. After fold k a
trial's CrossValidator reports its metric (the evaluator's name, e.g. `accuracy`) averaged over
folds 1..k, the best over its parameter maps. A prune decision ends the trial before the next fold,
so a pruned trial also skips CrossValidator's refit on all rows. Outside a trial, or with
`--no-autoreport`, the wrappers only call the originals.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from nbtune.trial._after_import import PatchOnce
from nbtune.trial._report import TrialPruned, TrialReports, current


@dataclass
class _Folds:
    """One CrossValidator.fit in a trial: the metric summed per parameter map over the folds done."""

    reports: TrialReports
    name: str
    larger_is_better: bool
    folds: int
    sums: list[float] = field(default_factory=list)
    done: int = 0  # folds finished
    _pending: int = 0  # this fold's parameter maps still fitting
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wrap(self, tasks: Sequence[Callable[[], tuple[int, float, Any]]]) -> list[Callable[[], tuple[int, float, Any]]]:
        """The fold's fit-and-evaluate tasks, wrapped to count their metrics (they run on CrossValidator's threads)."""
        self._pending = len(tasks)
        self.sums = self.sums or [0.0] * len(tasks)
        return [functools.partial(self._run, task) for task in tasks]

    def check(self) -> None:
        """End the trial here, before the next fold, if a report pruned it (raised on the trial's own thread)."""
        if self.reports.pruned:
            raise TrialPruned(f"pruned after fold {self.done} of {self.folds}")

    def _run(self, task: Callable[[], tuple[int, float, Any]]) -> tuple[int, float, Any]:
        index, metric, model = task()
        with self._lock:
            self.sums[index] += metric
            self._pending -= 1
            if self._pending == 0:
                self.done += 1
                pick = max if self.larger_is_better else min
                mean = pick(self.sums) / self.done
                # Sent from this pool thread; the trial's own thread raises, in check() before its next fold.
                self.reports.add(None, {self.name: mean}, final=self.done >= self.folds)
        return index, metric, model


_folds: ContextVar[_Folds | None] = ContextVar("nbtune_cv_folds", default=None)


def _patch(tuning: ModuleType) -> None:
    validator: Any = tuning.CrossValidator
    original_fit, original_tasks = validator._fit, getattr(tuning, "_parallelFitTasks", None)
    if original_tasks is None:  # a pyspark whose CrossValidator is built otherwise: no reports, no harm
        return

    @functools.wraps(original_fit)
    def _fit(self: Any, dataset: Any) -> Any:
        folds = _start(self)
        if folds is None:
            return original_fit(self, dataset)
        token = _folds.set(folds)
        try:
            return original_fit(self, dataset)
        finally:
            _folds.reset(token)

    @functools.wraps(original_tasks)
    def _parallelFitTasks(*args: Any, **kwargs: Any) -> Any:
        folds = _folds.get()  # None in TrainValidationSplit (one split: nothing to prune)
        if folds is None:
            return original_tasks(*args, **kwargs)
        folds.check()
        return folds.wrap(original_tasks(*args, **kwargs))

    validator._fit = _fit
    tuning._parallelFitTasks = _parallelFitTasks  # type: ignore[attr-defined]  # _fit looks it up per fold


_cross_validator = PatchOnce("pyspark.ml.tuning", _patch, ready="CrossValidator")
watch = _cross_validator.watch  # wrap CrossValidator now if pyspark.ml.tuning is loaded, else when it is imported


def _start(validator: Any) -> _Folds | None:
    """The fold counter for a CrossValidator.fit in a reporting trial, or None (not in one, or no metric name)."""
    reports = current()
    if reports is None or not reports.autoreport:
        return None
    evaluator = validator.getOrDefault(validator.evaluator)
    name = getattr(evaluator, "getMetricName", lambda: None)()
    if not isinstance(name, str):
        return None  # a custom evaluator without a metric name: nothing to report it as
    return _Folds(reports, name, bool(evaluator.isLargerBetter()), int(validator.getOrDefault(validator.numFolds)))
