"""ASHA (asynchronous successive halving) and asynchronous Hyperband, as Ray Tune defines them.

Rungs sit at min_steps * eta^k steps. A trial reaching a rung goes on only if its loss there is in
the best 1/eta of the losses recorded at that rung so far; no trial waits for a rung to fill, so a
slot never idles. Hyperband runs several ASHA brackets with different grace periods and deals trials
to them in turn, hedging against a grace period that is too short for the slow starters.
"""

from __future__ import annotations

import math

from nbtune.search.schedulers._base import percentile


class _Bracket:
    def __init__(self, min_steps: int, eta: float, max_steps: int | None) -> None:
        self.eta, self.max_steps, self.learned = eta, max_steps, False
        self.rungs: list[int] = []
        step = float(min_steps)
        while max_steps is None or step < max_steps:  # a rung at the last step would prune a finished trial
            self.rungs.append(round(step))
            if len(self.rungs) >= 64:
                break
            step *= eta
        self.recorded: dict[int, dict[int, float]] = {r: {} for r in self.rungs}  # rung -> tid -> loss

    def budget(self, steps: int) -> None:
        """A completed trial ran `steps`: without --max-steps that is a full trial, and no rung sits there."""
        if self.max_steps is None or self.learned:
            self.max_steps, self.learned = max(steps, self.max_steps or 0), True
            self.rungs = [r for r in self.rungs if r < self.max_steps]

    def decide(self, tid: int, step: int, loss: float) -> bool:
        for rung in reversed(self.rungs):
            if step < rung:
                continue
            seen = self.recorded[rung]
            if tid in seen:
                return False  # judged at this rung already; the next rung decides
            seen[tid] = loss
            # Ray's cutoff, in loss terms: go on only within the best 1/eta of the losses seen here.
            return loss > percentile(list(seen.values()), 1 / self.eta)
        return False


class ASHA:
    """Asynchronous successive halving (Li et al. 2018; Ray Tune's ASHAScheduler)."""

    def __init__(self, min_steps: int = 1, eta: float = 3, max_steps: int | None = None) -> None:
        self._bracket = _Bracket(min_steps, eta, max_steps)

    def decide(self, tid: int, step: int, loss: float) -> bool:
        """Prune at a rung when the loss is outside the best 1/eta recorded there."""
        return self._bracket.decide(tid, step, loss)

    def finished(self, tid: int, step: int, completed: bool) -> None:
        """A completed trial tells the budget (rungs stay: later trials are judged against them)."""
        if completed:
            self._bracket.budget(step)


class Hyperband:
    """Asynchronous Hyperband (Ray Tune's AsyncHyperBandScheduler): ASHA brackets dealt in turn."""

    def __init__(self, min_steps: int = 1, eta: float = 3, max_steps: int | None = None) -> None:
        # Brackets s = 0..S with grace period min_steps * eta^s; S from the budget, else 3 brackets.
        s_max = int(math.log(max_steps / min_steps, eta) + 1e-9) if max_steps else 2
        self._brackets = [_Bracket(round(min_steps * eta**s), eta, max_steps) for s in range(max(1, s_max + 1))]
        self._of: dict[int, _Bracket] = {}
        self._counts = [0] * len(self._brackets)  # trials dealt to each bracket

    def decide(self, tid: int, step: int, loss: float) -> bool:
        """Prune as the trial's bracket's ASHA would."""
        bracket = self._of.get(tid)
        if bracket is None:
            bracket = self._of[tid] = self._deal()
        return bracket.decide(tid, step, loss)

    def _deal(self) -> _Bracket:
        """The bracket for a new trial: shares by a softmax over the brackets' rung counts, as Ray deals.

        Ray draws at random with these weights; dealing to the bracket furthest below its share keeps
        the same proportions and a search's decisions reproducible.
        """
        sizes = [len(b.rungs) for b in self._brackets]
        weights = [math.exp(n - max(sizes)) for n in sizes]
        total, dealt = sum(weights), len(self._of) + 1
        gaps = [w / total * dealt - c for w, c in zip(weights, self._counts, strict=True)]
        chosen = gaps.index(max(gaps))
        self._counts[chosen] += 1
        return self._brackets[chosen]

    def finished(self, tid: int, step: int, completed: bool) -> None:
        """A completed trial tells every bracket the budget."""
        if completed:
            for bracket in self._brackets:
                bracket.budget(step)
