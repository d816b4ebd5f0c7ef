"""Suggestions computed ahead on a driver thread, so a free slot never waits for the algorithm.

The search's thread asks (`request`) and takes (`take`) in one order; a single thread computes the
requests in that order. Each request is frozen when asked (`History.request`): the finished trials
and the pending suggestions as they stood then, and the next seed of `--seed`'s generator. So:

- one slot: nothing is computed ahead. Suggestion i is asked for once trial i-1 has finished, so it
  learns from every result (computing ahead would leave it one result behind, a real loss in the
  short serial searches this is), and a seeded search is reproducible.
- several slots: each suggestion may miss the one result that arrives while it is computed. The
  seeds and the order of suggestions are reproducible, and so is a random or grid search; TPE and
  anneal also depend on which trials finished first, which is up to timing.
"""

from __future__ import annotations

import queue
import threading
from collections import deque

from nbtune.search._history import History, Proposal, Request

AHEAD_MAX = 4  # ready suggestions beyond the running trials: enough for a burst of finishes, few enough to be fresh


def ahead_for(slots: int) -> int:
    """How many suggestions to keep ready for `slots` slots (none for one: see the module's docstring)."""
    return 0 if slots <= 1 else min(slots, AHEAD_MAX)


class Suggester:
    """A small queue of ready suggestions, computed in request order on one driver thread."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._jobs: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._ready: deque[Proposal] = deque()
        self._asked: deque[int] = deque()  # ids requested and not yet taken, oldest first
        self._error: BaseException | None = None
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._work, name="nbtune-suggest", daemon=True)
        self._thread.start()

    @property
    def outstanding(self) -> int:
        """Suggestions asked for and not yet taken (ready or being computed)."""
        return len(self._asked)

    def request(self) -> None:
        """Ask for one more suggestion, computed from the search as it stands now."""
        req = self._history.request()
        self._asked.append(req.tid)
        self._jobs.put(req)

    def take(self) -> Proposal | None:
        """The oldest suggestion (waiting for it if need be); None when the space is exhausted."""
        if not self._asked:
            self.request()
        with self._done:
            while not self._ready and self._error is None:
                self._done.wait(0.1)  # a timeout keeps Ctrl-C responsive
            if self._error is not None:
                raise self._error
            proposal = self._ready.popleft()
        self._asked.popleft()
        if proposal.doc is None:
            self._history.release([proposal.tid])
            return None
        return proposal

    def close(self) -> None:
        """Stop the thread and give back every suggestion not taken: none becomes a trial."""
        self._jobs.put(None)
        self._history.release(list(self._asked))
        self._asked.clear()
        with self._done:
            self._ready.clear()
        self._thread.join(timeout=1.0)  # at most one suggestion's computation; it is discarded

    def _work(self) -> None:
        while (req := self._jobs.get()) is not None:
            try:
                proposal = self._history.compute(req)
            except BaseException as exc:  # raised again on the search's thread, by take()
                with self._done:
                    self._error = exc
                    self._done.notify()
                return
            with self._done:
                self._ready.append(proposal)
                self._done.notify()
