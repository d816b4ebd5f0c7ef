"""Which model trains on which worker next: every model visits every partition once per epoch.

Pure bookkeeping (no Spark, no Keras): the executor asks for hops for its free workers and tells
what finished; the record of every visit is kept for tests and the dashboard.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

VisitStatus = Literal["running", "done", "lost"]


@dataclass(frozen=True)
class Hop:
    """One sub-epoch: `model` trains one pass over the partition resident on `worker`."""

    model: int
    worker: int
    epoch: int  # 0-based epoch of the model this sub-epoch belongs to
    last: bool  # the model's last partition this epoch: its epoch ends with this hop


@dataclass
class Visit:
    """A hop as it happened: who trained where, and when (the clock's seconds)."""

    model: int
    worker: int
    epoch: int
    start: float
    end: float | None = None
    status: VisitStatus = "running"


@dataclass
class _Model:
    joined: int  # order of arrival: earlier models go first among equals
    epochs: int | None  # None until its fit call said (the first hop builds it)
    epoch: int = 0
    visited: set[int] = field(default_factory=set)  # workers seen in the current epoch
    on: int | None = None  # the worker it trains on now


class HopSchedule:
    """Models x partitions (one partition per worker); at most one model per worker at a time."""

    def __init__(self, workers: int, clock: Callable[[], float] = time.monotonic) -> None:
        if workers < 1:
            raise ValueError(f"a hopper schedule needs at least one worker, got {workers}")
        self.workers = workers
        self.visits: list[Visit] = []
        self._clock = clock
        self._models: dict[int, _Model] = {}
        self._busy: dict[int, Visit] = {}  # worker -> the visit on it
        self._joined = 0

    @property
    def models(self) -> list[int]:
        """The models in the schedule, in order of arrival."""
        return sorted(self._models, key=lambda m: self._models[m].joined)

    def add(self, model: int, epochs: int | None = None) -> None:
        """A model joins at the start of its first epoch."""
        if model in self._models:
            raise ValueError(f"model {model} is already in the schedule")
        self._models[model] = _Model(self._joined, epochs)
        self._joined += 1

    def set_epochs(self, model: int, epochs: int) -> None:
        """How many epochs the model trains (known once its fit call ran)."""
        self._models[model].epochs = epochs

    def epoch_of(self, model: int) -> int:
        """Epochs the model has completed."""
        return self._models[model].epoch

    def remove(self, model: int) -> None:
        """The model leaves (finished, pruned or failed); a hop it is on keeps its worker until it ends."""
        self._models.pop(model, None)

    def busy(self) -> set[int]:
        """Workers with a model on them."""
        return set(self._busy)

    def assign(self, free: Iterable[int] | None = None) -> list[Hop]:
        """Hops to start now on the free workers (all idle ones by default), as many as can start.

        A model goes where it has not been this epoch. Workers and idle models are matched so that
        the most workers get one (augmenting paths: a greedy pick can strand a worker); each worker
        prefers the model that trained least, so that models progress together (and reach their
        pruning rungs together), then the most constrained one (fewest partitions left this epoch).
        """
        idle = sorted(set(range(self.workers) if free is None else free) - set(self._busy))
        wants = {worker: self._candidates(worker) for worker in idle}
        owner: dict[int, int] = {}  # model -> the worker it is matched to

        def place(worker: int, tried: set[int]) -> bool:
            free_first = [m for m in wants[worker] if m not in owner] + [m for m in wants[worker] if m in owner]
            for model in free_first:
                if model in tried:
                    continue
                tried.add(model)
                if model not in owner or place(owner[model], tried):
                    owner[model] = worker
                    return True
            return False

        for worker in idle:
            place(worker, set())
        hops: list[Hop] = []
        for model, worker in sorted(owner.items(), key=lambda kv: kv[1]):
            m = self._models[model]
            m.on = worker
            hops.append(Hop(model, worker, m.epoch, last=len(m.visited) + 1 == self.workers))
            self._busy[worker] = Visit(model, worker, m.epoch, self._clock())
            self.visits.append(self._busy[worker])
        return hops

    def _candidates(self, worker: int) -> list[int]:
        """Idle models that may go to `worker` now, the one it should take first first."""
        ranked = [
            (m.epoch * self.workers + len(m.visited), len(self._left(m)), m.joined, model)
            for model, m in self._models.items()
            if m.on is None and not self._complete(m) and worker not in m.visited
        ]
        return [model for *_, model in sorted(ranked)]

    def done(self, hop: Hop) -> bool:
        """The hop finished; True when it completed the model's epoch."""
        self._end(hop, "done")
        m = self._models.get(hop.model)
        if m is None:
            return hop.last
        m.on = None
        m.visited.add(hop.worker)
        if len(m.visited) < self.workers:
            return False
        m.epoch += 1
        m.visited = set()
        return True

    def lost(self, hop: Hop) -> None:
        """The hop's worker died under it: the visit does not count and the model may go again."""
        self._end(hop, "lost")
        m = self._models.get(hop.model)
        if m is not None:
            m.on = None

    def _end(self, hop: Hop, status: VisitStatus) -> None:
        visit = self._busy.get(hop.worker)
        if visit is None or visit.model != hop.model:
            raise ValueError(f"model {hop.model} is not on worker {hop.worker}")
        del self._busy[hop.worker]
        visit.end, visit.status = self._clock(), status

    def _left(self, m: _Model) -> set[int]:
        return set(range(self.workers)) - m.visited

    @staticmethod
    def _complete(m: _Model) -> bool:
        return m.epochs is not None and m.epoch >= m.epochs
