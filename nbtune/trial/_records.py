"""What a trial produces, on its way from a worker to the result and the listeners."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from nbtune.trial._mlflow_capture import CapturedRun

Status = Literal["ok", "failed", "cancelled", "pruned"]
Curve = list[tuple[int, dict[str, float]]]  # (step, metrics) of each `nbtune.report`
ReportFn = Callable[[int, int, dict[str, float]], bool]  # (tid, step, metrics) -> prune it?


class LateRecording:
    """What a trial's cell logged to MLflow, arriving from its worker just after the trial's outcome.

    A pool worker sends the outcome first and reads its trial's MLflow store afterwards, while the
    driver picks the next trial: the trial path does not wait on MLflow.
    """

    def __init__(self) -> None:
        self._ready = threading.Event()
        self._runs: list[CapturedRun] = []
        self._problem: str | None = None

    def arrived(self, runs: list[CapturedRun], problem: str | None = None) -> None:
        """The worker's follow-up message (or nothing, `[]`, when the worker was lost first)."""
        self._runs, self._problem = runs, problem
        self._ready.set()

    def wait(self, timeout: float) -> tuple[list[CapturedRun], str | None]:
        """(runs, why they could not be read); ([], a reason) if they did not come within `timeout` s."""
        if not self._ready.wait(timeout):
            return [], f"nbtune: what the trial logged to MLflow did not arrive within {timeout:g} s"
        return self._runs, self._problem


@dataclass(kw_only=True)
class TrialRequest:
    """One trial to run: hyperopt's id, the parameter values and its time budget."""

    tid: int
    params: dict[str, Any]
    timeout: float | None = None  # seconds for this trial (--trial-timeout), None = no limit
    attempt: int = 1


@dataclass(kw_only=True)
class TrialOutcome:
    """What running one trial gave: sent back by whichever executor ran it."""

    tid: int
    status: Status
    value: float | None = None  # the metric, in its own sign (pruned: the best value it reported)
    step: int = 0  # the last step the trial reported
    log_metrics: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    error: str | None = None  # one line, e.g. "line 7: ZeroDivisionError: division by zero"
    traceback: str | None = None
    output: str = ""  # captured stdout and stderr of the trial
    host: str = ""
    fatal: str | None = None  # a mistake in the cell itself: stops the whole search
    timed_out: bool = False
    lost: bool = False  # the worker died under the trial: the driver may retry it once
    model: bytes | None = field(default=None, repr=False)  # --log-model: a zipped MLflow model directory
    model_error: str | None = None  # --log-model: why the model could not be saved
    mlflow_runs: list[CapturedRun] = field(default_factory=list, repr=False)  # what the cell logged to MLflow
    mlflow_follows: bool = False  # a pool worker sends `mlflow_runs` in its next message
    mlflow_later: LateRecording | None = field(default=None, repr=False, compare=False)  # the driver's end of it


@dataclass(kw_only=True)
class TrialRecord:
    """A finished trial as the result and the listeners see it."""

    number: int  # 0-based position in the search
    tid: int
    params: dict[str, Any]
    vals: dict[str, list[Any]] = field(default_factory=dict)  # hyperopt's values (choice indices), JSON-ready
    status: Status
    value: float | None = None
    log_metrics: dict[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    error: str | None = None
    traceback: str | None = None
    output: str = ""
    host: str = ""
    attempts: int = 1
    mlflow_run_id: str | None = None
    mlflow_url: str | None = None
    model: bytes | None = field(default=None, repr=False)  # --log-model: dropped once logged to MLflow
    model_error: str | None = None
    model_uri: str | None = None  # --log-model: "runs:/<run id>/model", once logged
    step: int = 0  # the last step the trial reported
    curve: Curve = field(default_factory=list, repr=False)  # its reports, as the driver received them
    mlflow_runs: list[CapturedRun] = field(default_factory=list, repr=False)  # dropped once written to MLflow
    mlflow_later: LateRecording | None = field(default=None, repr=False, compare=False)  # mlflow_runs to come

    @classmethod
    def from_outcome(
        cls, o: TrialOutcome, *, number: int, params: dict[str, Any], vals: dict[str, list[Any]], attempts: int = 1
    ) -> TrialRecord:
        """Combine an executor's outcome with what the driver knows about the trial."""
        return cls(
            number=number,
            tid=o.tid,
            params=params,
            vals=vals,
            status=o.status,
            value=o.value,
            log_metrics=o.log_metrics,
            duration=o.duration,
            error=o.error,
            traceback=o.traceback,
            output=o.output,
            host=o.host,
            attempts=attempts,
            model=o.model,
            model_error=o.model_error,
            step=o.step,
            mlflow_runs=o.mlflow_runs,
            mlflow_later=o.mlflow_later,
        )
