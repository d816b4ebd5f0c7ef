"""`nbtune.report()`: a trial's intermediate results, sent to the driver, which may prune the trial.

Light on purpose (standard library only): Spark workers import it.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from nbtune._text import as_number

# (step, numeric metrics) -> True when the driver decides to prune the trial.
Reporter = Callable[[int, dict[str, float]], bool]


class TrialPruned(BaseException):
    """Raised by `nbtune.report` in a trial the search pruned; ends the trial's cell.

    A BaseException, like KeyboardInterrupt, so a cell's `except Exception` does not swallow it.
    """


@dataclass
class TrialReports:
    """What one running trial reported, and whether the driver pruned it."""

    send: Reporter | None
    metric: str
    mode: str
    autoreport: bool = True
    step: int = 0  # the last step reported
    best: float | None = None  # the best value of the metric reported so far
    pruned: bool = False
    curve: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    _skipped: bool = False

    def add(self, step: int | None, metrics: dict[str, Any], final: bool = False) -> bool:
        """Record one report and pass it on; True if the trial is (now) pruned (never by its `final` report)."""
        self.step = self.step + 1 if step is None else int(step)
        numbers: dict[str, float] = {}
        for name, raw in metrics.items():
            value = as_number(raw)
            if value is None or not math.isfinite(value):
                if not self._skipped:  # once per trial: a report in a loop would repeat it every step
                    self._skipped = True
                    warnings.warn(
                        f"nbtune.report: {name}={raw!r} is not a finite number; skipped", RuntimeWarning, stacklevel=3
                    )
                continue
            numbers[name] = value
        if not numbers:
            return self.pruned
        self.curve.append((self.step, numbers))
        value = numbers.get(self.metric)
        if value is not None and (
            self.best is None or (value < self.best if self.mode == "min" else value > self.best)
        ):
            self.best = value
        if self.send is not None and not self.pruned and self.send(self.step, numbers) and not final:
            self.pruned = True
        return self.pruned


_current: ContextVar[TrialReports | None] = ContextVar("nbtune_trial_reports", default=None)


def current() -> TrialReports | None:
    """The reports of the trial running in this thread, or None outside a search."""
    return _current.get()


@contextlib.contextmanager
def reporting(reports: TrialReports) -> Iterator[TrialReports]:
    """Make `nbtune.report` (and Keras' automatic reports) go to `reports` while a trial runs."""
    token = _current.set(reports)
    try:
        yield reports
    finally:
        _current.reset(token)


def report(step: int | None = None, **metrics: Any) -> None:
    """Send a trial's intermediate results (`nbtune.report(val_loss=0.4)`; step 1, 2, ... when omitted).

    In a pruned trial it raises TrialPruned, which ends the cell; outside a search it does nothing.
    """
    if not metrics:
        raise TypeError("nbtune.report() needs at least one metric, e.g. nbtune.report(val_loss=val_loss)")
    reports = _current.get()
    if reports is not None and reports.add(step, metrics):
        raise TrialPruned(f"pruned at step {reports.step}")
