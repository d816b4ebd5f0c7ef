"""Search events: what the dashboard, the progress line and MLflow tracking listen to."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.trial._records import TrialRecord

if TYPE_CHECKING:
    from nbtune.hopper._strip import Bar


@dataclass
class SearchInfo:
    """What listeners know about a search when it starts."""

    name: str
    options: TuneOptions
    backend: str
    parallelism: int
    param_names: list[str]
    source: str = ""
    cancel_event: threading.Event = field(default_factory=threading.Event)
    # Called by cancel(), on the caller's thread: the running search's executor stops its trials.
    cancel_hooks: list[Callable[[], None]] = field(default_factory=list, repr=False)
    # A hopper search: which model trains on which worker so far, as (workers, bars), for the dashboard.
    placement: Callable[[], tuple[int, list[Bar]]] | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Ask the search to stop as a kernel interrupt would (finished trials are kept)."""
        self.cancel_event.set()
        for hook in list(self.cancel_hooks):
            hook()


class Listener:
    """Base class for search listeners; every hook is optional."""

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """The search is about to submit its first trial; `result` fills in as it runs."""

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """A trial was handed to a worker."""

    def trial_reported(self, number: int, step: int, metrics: dict[str, float]) -> None:
        """A running trial reported intermediate results (`nbtune.report`, or a Keras epoch)."""

    def trial_finished(self, record: TrialRecord) -> None:
        """A trial finished (ok, failed, cancelled or pruned)."""

    def search_finished(self, result: TuneResult) -> None:
        """The search ended; `result` is final."""

    def poll(self) -> None:
        """Called often while the search waits: time for throttled redraws and UI events."""


class Listeners(Listener):
    """Fan events out to several listeners; one failing listener warns once and is dropped."""

    def __init__(self, listeners: list[Listener]) -> None:
        self._listeners = list(listeners)

    def _each(self, hook: str, *args: Any) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, hook)(*args)
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                # Display and tracking must never break a search; say so once and go on.
                self._listeners.remove(listener)
                warnings.warn(
                    f"nbtune: {type(listener).__name__} stopped after an error: {exc!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """Fan out."""
        self._each("search_started", info, result)

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Fan out."""
        self._each("trial_started", number, params)

    def trial_reported(self, number: int, step: int, metrics: dict[str, float]) -> None:
        """Fan out."""
        self._each("trial_reported", number, step, metrics)

    def trial_finished(self, record: TrialRecord) -> None:
        """Fan out."""
        self._each("trial_finished", record)

    def search_finished(self, result: TuneResult) -> None:
        """Fan out."""
        self._each("search_finished", result)

    def poll(self) -> None:
        """Fan out."""
        self._each("poll")
