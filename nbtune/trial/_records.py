"""What a trial produces, on its way from a worker to the result and the listeners."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "failed", "cancelled"]


@dataclass
class TrialRequest:
    """One trial to run: hyperopt's id, the parameter values and its time budget."""

    tid: int
    params: dict[str, Any]
    timeout: float | None = None  # seconds for this trial (--trial-timeout), None = no limit
    attempt: int = 1


@dataclass
class TrialOutcome:
    """What running one trial gave: sent back by whichever executor ran it."""

    tid: int
    status: Status
    value: float | None = None  # the metric, in its own sign
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
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class TrialRecord:
    """A finished trial as the result and the listeners see it."""

    number: int  # 0-based position in the search
    tid: int
    params: dict[str, Any]
    status: Status
    value: float | None
    log_metrics: dict[str, Any]
    duration: float
    error: str | None
    traceback: str | None
    output: str
    host: str
    attempts: int = 1
    mlflow_run_id: str | None = None
    mlflow_url: str | None = None
    model: bytes | None = field(default=None, repr=False)  # --log-model: dropped once logged to MLflow
    model_error: str | None = None
    model_uri: str | None = None  # --log-model: "runs:/<run id>/model", once logged

    @classmethod
    def from_outcome(cls, number: int, params: dict[str, Any], o: TrialOutcome, attempts: int = 1) -> TrialRecord:
        """Combine an executor's outcome with what the driver knows about the trial."""
        record = cls(
            number,
            o.tid,
            params,
            o.status,
            o.value,
            o.log_metrics,
            o.duration,
            o.error,
            o.traceback,
            o.output,
            o.host,
            attempts,
        )
        record.model, record.model_error = o.model, o.model_error
        return record
