"""The objective: a cell body compiled once, run per trial in a fresh namespace (here or on a worker)."""

from __future__ import annotations

import ast
import builtins
import copy
import io
import linecache
import math
import socket
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import CodeType
from typing import Any

# Spark workers import this module: keep its imports light (no IPython, hyperopt, pandas).
from nbtune._text import as_number, shorten
from nbtune.trial._keras import watch as watch_keras
from nbtune.trial._mlflow_capture import CapturedRun, TrialCapture, names_mlflow
from nbtune.trial._output import capture_output
from nbtune.trial._records import TrialOutcome, TrialRequest
from nbtune.trial._report import Reporter, TrialPruned, TrialReports, reporting
from nbtune.trial._sparkml import watch as watch_sparkml
from nbtune.trial._timeouts import TrialTimeout, time_limit

CELL_FILENAME = "<tune-cell>"
OUTPUT_LIMIT = 64 * 1024  # keep the tail of a chatty trial's output, not all of it


class _Tail(io.StringIO):
    """A text buffer that keeps only the last OUTPUT_LIMIT characters."""

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.tell() > 2 * OUTPUT_LIMIT:
            tail = self.getvalue()[-OUTPUT_LIMIT:]
            self.seek(0)
            self.truncate()
            super().write(tail)
        return n

    def text(self) -> str:
        value = self.getvalue()
        return value if len(value) <= OUTPUT_LIMIT else "...\n" + value[-OUTPUT_LIMIT:]


@dataclass(kw_only=True)
class Objective:
    """Everything a worker needs to run trials; picklable (the code is compiled lazily)."""

    body: ast.Module
    source: str
    captured: dict[str, Any]
    param_names: list[str]
    metric: str = "loss"
    mode: str = "min"
    log_metrics: tuple[str, ...] = ()
    line_offset: int = 0
    log_model: bool = False
    autoreport: bool = True  # Keras' model.fit reports each epoch, CrossValidator each fold (trial/_keras, _sparkml)
    autolog: dict[str, dict[str, Any]] = field(default_factory=dict)  # the notebook's MLflow autologging
    keep_mlflow: bool = True  # send what the cell logs to MLflow back (tracking on), or drop it
    _code: CodeType | None = field(default=None, repr=False, compare=False)
    _deferred: TrialCapture | None = field(default=None, repr=False, compare=False)  # see run(defer_mlflow=True)
    _names_mlflow: bool | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_code"] = None  # code objects do not pickle; workers compile their own copy
        state["_deferred"] = None
        state["_names_mlflow"] = None
        return state

    @property
    def code(self) -> CodeType:
        """The body compiled once, with line numbers as the user sees them in the cell."""
        if self._code is None:
            # Shift a copy so line numbers in tracebacks match the cell, header included.
            tree = ast.increment_lineno(copy.deepcopy(self.body), self.line_offset)
            self._code = compile(tree, CELL_FILENAME, "exec")
            lines = ("\n" * self.line_offset + self.source).splitlines(keepends=True)
            linecache.cache[CELL_FILENAME] = (len(self.source), None, lines, CELL_FILENAME)
        return self._code

    def run(
        self, request: TrialRequest, reporter: Reporter | None = None, *, defer_mlflow: bool = False
    ) -> TrialOutcome:
        """Run one trial here, capturing its output; a raising trial is a failed outcome.

        `reporter` takes the trial's `nbtune.report` calls to the driver and answers whether to prune it.
        With `defer_mlflow`, what the cell logged to MLflow is left for `take_recording()` (a pool worker
        reads it after sending the outcome) and the outcome says so (`mlflow_follows`).
        """
        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        ns.update(self.captured)
        ns.update(request.params)
        buf = _Tail()
        start = time.perf_counter()
        outcome = TrialOutcome(tid=request.tid, status="ok", host=socket.gethostname())
        reports = TrialReports(send=reporter, metric=self.metric, mode=self.mode, autoreport=self.autoreport)
        if self.autoreport:
            watch_keras()
            watch_sparkml()
        # Outermost, so that the cell's MLflow runs end after its time limit and its reports are over.
        with self._capture(f"trial {request.tid}") as capture:
            try:
                with (
                    capture_output(buf),
                    time_limit(request.timeout),
                    reporting(reports),
                ):
                    exec(self.code, ns)
            except TrialPruned:
                pass  # nbtune.report ended the cell: what it reported is the result
            except Exception as exc:
                outcome.timed_out = isinstance(exc, TrialTimeout)
                outcome.status = "failed"
                outcome.error = _one_line(exc)
                outcome.traceback = _cell_traceback(exc)
            capture.status = "pruned" if reports.pruned else outcome.status
        outcome.duration = time.perf_counter() - start
        outcome.output = buf.text()
        outcome.step = reports.step
        if not self.keep_mlflow:
            capture.discard()
        elif defer_mlflow and capture.recording:  # read by take_recording(), once the outcome is sent
            outcome.mlflow_follows, self._deferred = True, capture
        else:
            outcome.mlflow_runs = capture.collect()
        if capture.problem:
            outcome.output += f"\n{capture.problem}\n"
        if reports.pruned:  # even if the cell failed after Keras stopped: the pruning is why it ended
            outcome.status, outcome.value = "pruned", reports.best
            outcome.error = outcome.traceback = None
            self._read_log_metrics(ns, outcome)  # what the cell computed after a stopped fit
            return outcome
        if outcome.status == "ok":
            self._read_metrics(ns, outcome)
        if outcome.status == "ok" and self.log_model:
            self._attach_model(ns, outcome)
        return outcome

    def take_recording(self) -> tuple[list[CapturedRun], str | None]:
        """What the last trial run with `defer_mlflow` logged to MLflow, and why it could not be read, if so."""
        capture, self._deferred = self._deferred, None
        if capture is None:
            return [], None
        before = capture.problem  # already in the trial's output
        runs = capture.collect()
        return runs, capture.problem if capture.problem != before else None

    def _capture(self, name: str) -> TrialCapture:
        """Where what the cell logs to MLflow is recorded (the driver backend records nothing)."""
        if self._names_mlflow is None:
            self._names_mlflow = names_mlflow(self.code, self.captured)
        return TrialCapture(name, self.autolog, self._names_mlflow)

    def _attach_model(self, ns: Mapping[str, Any], outcome: TrialOutcome) -> None:
        """--log-model: the trial's `model`, saved with its MLflow flavour (a failure is noted, not fatal)."""
        if "model" not in ns:
            outcome.status = "failed"
            outcome.fatal = outcome.error = "--log-model saves the variable 'model', which the cell never assigned"
            return
        from nbtune.trial._model_export import export_model  # MLflow loads only when asked to

        try:
            outcome.model = export_model(ns["model"])
        except Exception as exc:
            outcome.model_error = _one_line(exc)

    def _read_metrics(self, ns: Mapping[str, Any], outcome: TrialOutcome) -> None:
        if self.metric not in ns:
            outcome.status = "failed"
            outcome.fatal = outcome.error = (
                f"the cell ran but never assigned the metric '{self.metric}'"
                " (assign it, or name another variable with --metric)"
            )
            return
        raw = ns[self.metric]
        value = as_number(raw)
        if value is None:
            outcome.status = "failed"
            outcome.fatal = outcome.error = (
                f"the metric '{self.metric}' must be a number, got {type(raw).__name__} {shorten(repr(raw))}"
            )
            return
        outcome.value = value
        if math.isnan(value):
            outcome.status = "failed"
            outcome.error = f"the metric '{self.metric}' is nan (did the training diverge?)"
        self._read_log_metrics(ns, outcome)

    def _read_log_metrics(self, ns: Mapping[str, Any], outcome: TrialOutcome) -> None:
        for name in self.log_metrics:
            if name in ns:
                extra = ns[name]
                number = as_number(extra)
                outcome.log_metrics[name] = number if number is not None else shorten(repr(extra))


def _cell_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    return [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == CELL_FILENAME]


def _one_line(exc: BaseException) -> str:
    """'line 7: ZeroDivisionError: division by zero' (the deepest line of the cell)."""
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    frames = _cell_frames(exc)
    return f"line {frames[-1].lineno}: {last}" if frames else last


def _cell_traceback(exc: BaseException) -> str:
    """The traceback without nbtune's own frames above the cell."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != CELL_FILENAME:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb or exc.__traceback__))
