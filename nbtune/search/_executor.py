"""The executor interface: where trials run. Executors know nothing of widgets or MLflow."""

from __future__ import annotations

from typing import Protocol

from nbtune.trial._records import TrialOutcome, TrialRequest


class Executor(Protocol):
    """Runs trials somewhere and hands back their outcomes as they finish."""

    name: str
    slots: int  # how many trials may run at once

    def submit(self, request: TrialRequest) -> None:
        """Queue a trial; it starts as soon as a slot is free."""

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Outcomes that finished, waiting up to `timeout` seconds for at least one."""

    def cancel(self) -> None:
        """Stop every running trial now (a search was interrupted, cancelled or timed out)."""

    def close(self) -> None:
        """Release what the executor holds; safe to call twice."""


class ExecutorError(Exception):
    """The executor cannot go on (e.g. its workers cannot start); the search stops with this message."""
