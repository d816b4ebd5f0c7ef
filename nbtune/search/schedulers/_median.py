"""The median stopping rule (Golovin et al. 2017; Optuna's MedianPruner, Ray Tune's MedianStoppingRule)."""

from __future__ import annotations

from nbtune.search.schedulers._base import percentile

_MIN_OTHERS = 3  # trials that must have reached a step before a median there means anything


class Median:
    """Prune a trial whose best loss so far is worse than the median of other trials' at the same step."""

    def __init__(self, min_steps: int = 1) -> None:
        self.min_steps = min_steps
        self._best: dict[int, dict[int, float]] = {}  # tid -> step -> best loss up to that step

    def decide(self, tid: int, step: int, loss: float) -> bool:
        """Compare with the others that reached `step` (their best up to it)."""
        mine = self._best.setdefault(tid, {})
        best = min([loss, *mine.values()])
        mine[step] = best
        if step < self.min_steps:
            return False
        others = [_best_at(curve, step) for t, curve in self._best.items() if t != tid]
        known = [v for v in others if v is not None]
        return len(known) >= _MIN_OTHERS and best > percentile(known, 0.5)

    def finished(self, tid: int, step: int, completed: bool) -> None:
        """Nothing to do: finished trials' curves stay as the reference."""


def _best_at(curve: dict[int, float], step: int) -> float | None:
    reached = [loss for s, loss in curve.items() if s <= step]
    return min(reached) if reached and max(curve) >= step else None
