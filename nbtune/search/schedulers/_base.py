"""What every pruning scheduler answers, and how `--prune` picks one."""

from __future__ import annotations

from typing import Protocol

from nbtune._options import Prune


class Scheduler(Protocol):
    """Decides from one report whether its trial goes on. Called under the hub's lock."""

    def decide(self, tid: int, step: int, loss: float) -> bool:
        """True to prune trial `tid`, which reached `step` with `loss` (lower is better)."""

    def finished(self, tid: int, step: int, completed: bool) -> None:
        """Trial `tid` ended at `step`; `completed` if it ran its full course (not pruned, failed or lost)."""


def percentile(values: list[float], q: float) -> float:
    """The q-th quantile (0..1) with linear interpolation, as numpy's default."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def make_scheduler(prune: Prune, min_steps: int, eta: float, max_steps: int | None) -> Scheduler | None:
    """The scheduler `--prune` names, or None for `--prune none`."""
    from nbtune.search.schedulers._asha import ASHA, Hyperband
    from nbtune.search.schedulers._median import Median

    if prune == "asha":
        return ASHA(min_steps, eta, max_steps)
    if prune == "hyperband":
        return Hyperband(min_steps, eta, max_steps)
    if prune == "median":
        return Median(min_steps)
    return None
