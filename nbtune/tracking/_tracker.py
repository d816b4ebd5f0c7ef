"""MLflow tracking: a parent run per search, a child run per trial, written by a background thread.

The search only puts events on a queue; one writer thread imports MLflow, creates the runs and
logs each trial with a single `log_batch` (its reports too, batched), so a slow or unreachable store
never delays a trial.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtune._events import Listener, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune._text import first_line, is_finite_number, shorten
from nbtune.tracking._links import RunLinks, links_for
from nbtune.tracking._replay import log_batches, own_entities, replay
from nbtune.trial._mlflow_capture import uri_lock
from nbtune.trial._records import TrialRecord
from nbtune.ui import _plots as plots

# A call to a remote store that makes no progress for this long counts as an outage: the user is told, the
# search goes on and the writer catches up once the store answers. (MLflow's HTTP client retries a refused
# connection for minutes.) Local stores (sqlite, files) fail fast when they fail, but can be slow on a busy
# machine (creating a new mlflow.db took 25 s here under load), so they are never timed out.
STALL_SECONDS = 30.0
OUTAGE_PATIENCE = 24 * 3600.0  # seconds without an answer before the writer gives up what waits
# Writers whose search has ended while their store was down; they finish once it answers.
_BACKGROUND: set[MlflowTracker] = set()
CELL_HASH_TAG = "nbtune.cell_hash"
# On a child run whose trial reported: {"reports": N, "keys": [metric names]}. Each report is logged with
# its own timestamp, so --resume regroups the first N timestamps of those keys' histories into the curve.
CURVE_TAG = "nbtune.curve"
_BATCH_METRICS = 1000  # MLflow's limit of metrics in one log_batch
_PARAM_MAX, _TAG_MAX = 6000, 8000  # MLflow's value length limits
_SETTLE, _MAX_DELAY = 0.05, 1.0  # seconds: quiet wanted before the writer works, longest wait for it
_RECORDING_WAIT = 60.0  # seconds: longest wait for a trial's MLflow recording once its outcome is in
_SWITCH_INTERVAL = 0.001  # seconds: the GIL's switch interval while a search writes to MLflow
_RUN_STATUS = {"ok": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "pruned": "KILLED"}


class TrackingWarning(RuntimeWarning):
    """MLflow tracking stopped during a search (the search itself went on)."""


class _QuietNbtuneThreads(logging.Filter):
    """Drop log records made on nbtune's own MLflow threads: the user gets one warning, not every retry."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.threadName or not record.threadName.startswith("nbtune-")


_QUIET = _QuietNbtuneThreads()


def quiet_mlflow_logs() -> None:
    """Keep MLflow's and urllib3's messages from nbtune's threads out of the notebook (idempotent)."""
    # Logger filters see only records made on that very logger; handler filters see all that reach them.
    targets: list[logging.Filterer] = [logging.getLogger(n) for n in ("urllib3.connectionpool", "urllib3.util.retry")]
    targets += [logging.getLogger("alembic.runtime.migration"), *logging.getLogger("mlflow").handlers]
    for target in targets:
        if _QUIET not in target.filters:
            target.addFilter(_QUIET)


def cell_hash(source: str) -> str:
    """What identifies "the same cell" across kernel restarts: a hash of its source."""
    text = "\n".join(line.rstrip() for line in source.strip().splitlines())
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def default_experiment(namespace: Mapping[str, Any]) -> str:
    """The notebook's name when the kernel knows it (Jupyter, VS Code), else `nbtune`."""
    candidates = (namespace.get("__session__"), namespace.get("__vsc_ipynb_file__"), os.environ.get("JPY_SESSION_NAME"))
    for found in candidates:
        if isinstance(found, str) and found.strip():
            stem = Path(found.strip()).stem
            if stem:
                return stem
    return "nbtune"


def run_name(options: TuneOptions, info: SearchInfo) -> str:
    """--run-name, else the cell's first comment line, else the metric and the parameters."""
    if options.run_name:
        return options.run_name
    for line in info.source.splitlines():
        text = line.strip()
        if text.startswith("#") and not text.lstrip("# ").startswith("tune:") and text.lstrip("# "):
            return text.lstrip("# ")[:80]
        if text:
            break
    return f"{options.metric} over {', '.join(info.param_names)}"[:80]


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class _Reports:
    """The writer's account of one trial's reports."""

    keys: dict[str, None] = field(default_factory=dict)  # metric names, in the order first reported
    count: int = 0
    last_ms: int = 0  # the timestamp of the last report (each report gets a later one than the one before)
    max_step: int = 0
    pending: list[tuple[str, float, int, int]] = field(default_factory=list)  # (key, value, ms, step) to log


class MlflowTracker(Listener):
    """Logs a search to MLflow from a writer thread; warns once and steps aside if the store fails."""

    def __init__(self, options: TuneOptions) -> None:
        self._options = options
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._done = threading.Event()  # everything is written (or tracking gave up)
        self._settled = threading.Event()  # every trial and the summary are in: the notebook need not wait
        self._busy_since: float | None = None  # when the writer's current call to a remote store began
        self._abandoned = False  # the store failed for good: tracking is over
        self._down_since: float | None = None  # when the store stopped answering (time.monotonic)
        self._outage: str | None = None  # the last error of a store that does not answer
        self._outage_warned = False
        self._wake = threading.Event()  # cuts short the writer's pause between tries
        self._remote = False
        self._uri = self._options.tracking_uri or ""
        self._notebook_uri: str | None = None  # MLflow's tracking URI in the notebook, read before any trial
        self._error: str | None = None
        self._warned = False
        self._model_warned = False
        self._result: TuneResult | None = None
        self._info: SearchInfo | None = None
        self._client: Any = None
        self._store: Any = None
        self._links = RunLinks(None)
        self._experiment_id = ""
        self._parent_id = ""
        self._runs: dict[int, str] = {}  # trial number -> child run id
        self._artifact_uris: dict[str, str] = {}  # child run id -> its artifact location
        self._reports: dict[int, _Reports] = {}  # trial number -> its reports (writer thread only)
        self._best_logged: float | None = None
        self._search_id = uuid.uuid4().hex
        self._thread: threading.Thread | None = None
        self._switch_interval = sys.getswitchinterval()

    # -- the search's side: never blocks, never raises ------------------------------------------

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """Start the writer (it imports MLflow and opens the parent run off the search's path)."""
        self._info, self._result = info, result
        if not self._uri and "mlflow" in sys.modules:  # free now; once a local trial runs, MLflow points at its store
            self._notebook_uri = sys.modules["mlflow"].get_tracking_uri()
        self._thread = threading.Thread(target=self._write, name="nbtune-mlflow", daemon=True)
        # The writer's Python work holds the GIL; the search's threads, woken by a trial's end, wait up to the
        # switch interval (5 ms) at every hand-over. Shorter while the search runs, so they wait less.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, _SWITCH_INTERVAL))
        self._thread.start()

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Queue the child run's creation."""
        self._queue.put(("start", number, _now_ms()))

    def trial_reported(self, number: int, step: int, metrics: dict[str, float]) -> None:
        """Queue a report: step metrics on the trial's child run, logged with others by the writer."""
        if not self._done.is_set():  # after an outage nobody would take them
            self._queue.put(("report", number, step, metrics, _now_ms()))

    def trial_finished(self, record: TrialRecord) -> None:
        """Queue the trial's parameters, metrics and tags (one `log_batch`)."""
        if record.model_error and not self._model_warned:
            self._model_warned = True
            warnings.warn(f"nbtune: {record.model_error}; the trials go on without it", TrackingWarning, stacklevel=2)
        self._queue.put(("finish", record, record.vals, _now_ms()))

    def poll(self) -> None:
        """Notice an outage while the search runs, so the warning comes when it happens."""
        self._check()

    def search_finished(self, result: TuneResult) -> None:
        """Queue the summary and artifacts, then wait until the writer is done, or the store is down.

        A store that is down does not hold the notebook: the writer goes on in the background and
        writes what waits once the store answers again (`--resume` waits for it first).
        """
        sys.setswitchinterval(self._switch_interval)
        self._queue.put(("end", _now_ms()))
        self._wake.set()  # a writer pausing between tries tries again now
        ended = time.monotonic()
        try:
            while not self._settled.wait(0.1):
                down = self._outage_started()
                if self._check() or (down is not None and time.monotonic() - max(down, ended) > STALL_SECONDS):
                    break  # the store is down: what waits is left to the background
        except KeyboardInterrupt:
            pass  # the writer goes on in the background
        self._check()
        if self._settled.is_set():
            if not self._done.is_set():  # the summary's table and figures, written after the cell returns
                _BACKGROUND.add(self)
                _finish_at_exit()
            return
        if not self._abandoned:
            _BACKGROUND.add(self)
            _finish_at_exit()
            waiting = sum(1 for r in result.records if r.mlflow_run_id is None)
            warnings.warn(
                f"nbtune: MLflow{self._where()} is not answering: {waiting} of {len(result.records)} trials and the"
                " search's summary are not in it yet. nbtune writes them when it answers again (keep this kernel"
                " running; `--resume` waits for them)",
                TrackingWarning,
                stacklevel=2,
            )

    def _outage_started(self) -> float | None:
        """Since when (time.monotonic) the store has not answered, None if it answers."""
        if self._down_since is not None:
            return self._down_since
        busy = self._busy_since
        if busy is not None and time.monotonic() - busy > STALL_SECONDS:
            return busy
        return None

    def _where(self) -> str:
        return f" at {self._uri}" if self._uri else ""

    def _check(self) -> bool:
        """Warn (once) about a store that stopped answering or failed; True if tracking is over."""
        if not self._outage_warned and self._outage_started() is not None:
            self._outage_warned = True
            why = self._outage or f"no answer for {STALL_SECONDS:.0f} s"
            warnings.warn(
                f"nbtune: MLflow{self._where()} is not answering ({why}); the search goes on, every trial is in"
                f" `{self._options.out}` and goes to MLflow when it answers again",
                TrackingWarning,
                stacklevel=2,
            )
        if self._error is not None and not self._warned:
            self._warned = True
            warnings.warn(
                f"nbtune: MLflow tracking{self._where()} stopped ({self._error}); "
                f"the search goes on and every trial is in `{self._options.out}`",
                TrackingWarning,
                stacklevel=2,
            )
        return self._abandoned or self._settled.is_set()

    @property
    def uri(self) -> str:
        """The tracking URI it writes to (once the writer has resolved it)."""
        return self._uri

    def wait(self, timeout: float | None) -> bool:
        """Wait for the writer to finish; True if it has."""
        return self._done.wait(timeout)

    # -- the writer thread --------------------------------------------------------------------

    def _write(self) -> None:
        try:
            self._retrying(self._open)
            while True:
                for event in self._next_batch():
                    if event[0] == "report":
                        self._add_report(event[1], event[2], event[3], event[4])
                        continue  # logged together with the batch's other reports
                    if event[0] == "start":
                        self._retrying(self._start_child, event[1], event[2])
                    elif event[0] == "finish":
                        self._retrying(self._flush_reports)  # a trial's reports go before its final values
                        self._retrying(self._finish_child, event[1], event[2], event[3])
                    else:
                        self._retrying(self._flush_reports)
                        self._retrying(self._close, event[1])
                        self._settled.set()  # the cell returns; the summary's files follow (not its data)
                        self._retrying(self._summary_files)
                        return
                self._retrying(self._flush_reports)
                self._retrying(self._log_best)
        except Exception as exc:
            self._abandoned = True
            self._error = shorten(first_line(exc), 200)
        finally:
            self._busy_since = None
            self._settled.set()
            self._done.set()
            _BACKGROUND.discard(self)

    def _retrying(self, step: Callable[..., None], *args: Any) -> None:
        """Run one step of the writer; while a remote store is unreachable, try it again and again."""
        pause = 1.0
        while True:
            self._busy_since = time.monotonic() if self._remote else None
            try:
                step(*args)
                self._down_since = self._outage = None
                return
            except Exception as exc:
                if not self._remote or not _unreachable(exc):
                    raise
                if self._down_since is None:
                    self._down_since = time.monotonic()
                self._outage = shorten(first_line(exc), 200)
                if time.monotonic() - self._down_since > OUTAGE_PATIENCE:
                    raise
            finally:
                self._busy_since = None
            if self._wake.wait(pause):
                self._wake.clear()
            pause = min(pause * 2, 30.0)

    def _next_batch(self) -> list[tuple[Any, ...]]:
        """Events that came together, taken once the queue has been quiet for a moment.

        The driver's own work (suggesting the next trial) follows a trial's end; waiting for the quiet
        that follows lets the writer's CPU time (and the GIL) fall in the trials' time instead.
        """
        events = [self._queue.get()]
        deadline = time.monotonic() + _MAX_DELAY
        while events[-1][0] != "end" and time.monotonic() < deadline:
            try:
                events.append(self._queue.get(timeout=_SETTLE))
            except queue.Empty:
                break
        return events

    def _open(self) -> None:
        """Import MLflow, then open the parent run (a new one, or the resumed search's)."""
        import mlflow
        from mlflow.tracking import MlflowClient

        quiet_mlflow_logs()
        assert self._info is not None and self._result is not None
        with uri_lock:  # a local-backend trial points MLflow at its own store while it runs: not that one
            client = MlflowClient(tracking_uri=self._uri or self._notebook_uri or mlflow.get_tracking_uri())
        self._uri = client.tracking_uri
        self._remote = self._uri.startswith(("http:", "https:", "databricks"))
        self._client = client
        self._store = getattr(getattr(client, "_tracking_client", None), "store", None)
        self._links = links_for(client.tracking_uri, self._options.mlflow_ui_url)
        info, result, opts = self._info, self._result, self._options
        flags = opts.logged()
        flags.update(backend=info.backend, parallelism=info.parallelism, log_metrics=",".join(opts.log_metrics))
        tags = {"nbtune.search_id": self._search_id, "nbtune.flags": shorten(json.dumps(flags, default=str), _TAG_MAX)}
        if self._parent_id:  # opened already, before the store stopped answering
            pass
        elif result.parent_run_id:  # --resume: the same parent run gets the new children
            parent = client.get_run(result.parent_run_id)
            self._experiment_id, self._parent_id = parent.info.experiment_id, parent.info.run_id
            self._update(self._parent_id, "RUNNING", None)
            self._log(self._parent_id, tags=tags)
        else:
            self._experiment_id = self._experiment(client)
            tags.update(self._context_tags())
            tags.update(
                {
                    CELL_HASH_TAG: cell_hash(info.source),
                    "nbtune.metric": opts.metric,
                    "nbtune.mode": opts.mode,
                    "nbtune.params": json.dumps(info.param_names),
                    "mlflow.note.content": shorten(f"```python\n{info.source.strip()}\n```", _TAG_MAX),
                }
            )
            parent = client.create_run(self._experiment_id, run_name=run_name(opts, info), tags=tags)
            self._parent_id = parent.info.run_id
            self._log(self._parent_id, params={k: v for k, v in flags.items() if v not in (None, "")})
            client.log_text(self._parent_id, info.source, "cell.py")
        result.parent_run_id = self._parent_id
        result.parent_url = self._links.run_url(self._experiment_id, self._parent_id)
        _warm_up()

    def _experiment(self, client: Any) -> str:
        name = self._options.experiment
        if name is None:  # on Databricks: the notebook's own experiment, as MLflow resolves it
            from mlflow.tracking.fluent import _get_experiment_id

            with uri_lock:
                return str(_get_experiment_id())
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return str(found.experiment_id)
        try:
            return str(client.create_experiment(name))
        except Exception:
            found = client.get_experiment_by_name(name)  # another search created it meanwhile
            if found is None:
                raise
            return str(found.experiment_id)

    def _context_tags(self) -> dict[str, str]:
        """User, source and (on Databricks) notebook tags, as `mlflow.start_run` would set them."""
        try:
            from mlflow.tracking.context.registry import resolve_tags

            return {k: str(v) for k, v in resolve_tags().items()}
        except Exception:
            return {}

    def _start_child(self, number: int, start_ms: int) -> None:
        assert self._info is not None
        if number in self._runs:  # opened already, by a report that came first
            return
        tags = {
            "mlflow.parentRunId": self._parent_id,
            "nbtune.search_id": self._search_id,
            "nbtune.trial": str(number),
            "nbtune.backend": self._info.backend,
        }
        run = self._client.create_run(self._experiment_id, start_time=start_ms, tags=tags, run_name=f"trial {number}")
        self._runs[number] = run.info.run_id
        self._artifact_uris[run.info.run_id] = run.info.artifact_uri

    def _finish_child(self, record: TrialRecord, vals: dict[str, list[Any]], end_ms: int) -> None:
        if record.number not in self._runs:  # finished without a start event: open it now
            self._start_child(record.number, end_ms - int(record.duration * 1000))
        run_id = self._runs[record.number]
        reports = self._reports.get(record.number)
        metrics = {"duration": record.duration}
        if is_finite_number(record.value):
            metrics[self._options.metric] = record.value  # type: ignore[assignment]
        tags = {"nbtune.status": record.status, "nbtune.host": record.host, "nbtune.vals": json.dumps(vals)}
        if record.attempts > 1:
            tags["nbtune.attempts"] = str(record.attempts)
        if record.error:
            tags["nbtune.error"] = record.error
        if record.step:
            tags["nbtune.step"] = str(record.step)
        step, end_log_ms = record.step, None
        if reports is not None:
            tags[CURVE_TAG] = json.dumps({"reports": reports.count, "keys": list(reports.keys)})
            # The final values at the last step and after every report, so that MLflow's value of a reported
            # metric (its latest) is the trial's (a pruned trial's best), not its last report.
            step, end_log_ms = max(step, reports.max_step), max(_now_ms(), reports.last_ms + 1)
        for name, value in record.log_metrics.items():
            if is_finite_number(value):
                metrics[name] = value
            else:
                tags[f"log.{name}"] = str(value)
        params = {k: shorten(v, _PARAM_MAX) for k, v in record.params.items()}
        if record.model is not None:
            self._log_model(run_id, record)
            tags["nbtune.model"] = str(record.model_uri)  # so --resume knows the trial has one
        if record.mlflow_later is not None:  # a pool worker sends it just after the outcome: here within ms
            record.mlflow_runs, problem = record.mlflow_later.wait(_RECORDING_WAIT)
            record.mlflow_later = None
            if problem:
                record.output += f"\n{problem}\n"
        # What the cell logged to the trial's run goes in the same batch. nbtune's values come last (latest
        # step and time), so MLflow shows them where a cell's metric has the same name (Keras' `loss`).
        own = record.mlflow_runs[0] if record.mlflow_runs and record.mlflow_runs[0].parent is None else None
        extra = own_entities(own, taken=params) if own is not None else None
        if own is not None and own.metrics:
            same = [(ms, at) for key, _, ms, at in own.metrics if key in metrics]
            if same:
                step = max(step, *(at for _, at in same))
                end_log_ms = max(end_log_ms or _now_ms(), *(ms + 1 for ms, _ in same))
        self._log(run_id, metrics, params, tags, step=step, ms=end_log_ms, extra=extra)
        if record.mlflow_runs:  # the rest: nested runs, artifacts, datasets, models
            replay(self._client, self._experiment_id, run_id, record.mlflow_runs, self._upload)
            record.mlflow_runs = []
        if record.status == "failed":
            if record.traceback:
                self._client.log_text(run_id, record.traceback, "traceback.txt")
            if record.output:
                self._client.log_text(run_id, record.output, "output.txt")
        self._update(run_id, _RUN_STATUS[record.status], end_ms)
        self._reports.pop(record.number, None)
        record.mlflow_run_id = run_id
        record.mlflow_url = self._links.run_url(self._experiment_id, run_id)

    def _add_report(self, number: int, step: int, metrics: Mapping[str, float], ms: int) -> None:
        reports = self._reports.setdefault(number, _Reports())
        # One timestamp per report, later than the one before: it tells a trial's reports apart in MLflow.
        reports.last_ms = ms = max(ms, reports.last_ms + 1)
        reports.count += 1
        reports.max_step = max(reports.max_step, step)
        for key, value in metrics.items():
            reports.keys.setdefault(key, None)
            reports.pending.append((key, float(value), ms, step))

    def _flush_reports(self) -> None:
        """Log the reports that wait, a `log_batch` per trial (and per 1000 metrics)."""
        from mlflow.entities import Metric

        for number, reports in self._reports.items():
            if not reports.pending:
                continue
            if number not in self._runs:  # its start event was lost: open the run at its first report
                self._start_child(number, reports.pending[0][2])
            metrics = [Metric(key, value, ms, step) for key, value, ms, step in reports.pending]
            for i in range(0, len(metrics), _BATCH_METRICS):
                self._client.log_batch(self._runs[number], metrics=metrics[i : i + _BATCH_METRICS])
            del reports.pending[: len(metrics)]  # only once logged: a store that is down gets them again

    def _log_model(self, run_id: str, record: TrialRecord) -> None:
        """--log-model: the trial's MLflow model directory as the run's `model` artifact."""
        from nbtune.trial._model_export import unpack_model

        assert record.model is not None
        with tempfile.TemporaryDirectory() as tmp:
            unpack_model(record.model, tmp)
            self._upload(run_id, tmp, "model")
        record.model_uri = f"runs:/{run_id}/model"
        record.model = None  # logged: the notebook need not hold every trial's model in memory

    def _log_best(self) -> None:
        """A point of the best-so-far curve on the parent, when the best improved."""
        result = self._result
        if result is None or result.best_value is None or result.best_value == self._best_logged:
            return
        self._log(self._parent_id, {f"best_{result.metric}": result.best_value}, step=len(result.records))
        self._best_logged = result.best_value

    def _close(self, end_ms: int) -> None:
        """The summary on the parent: best value and parameters, counts, artifacts, final status."""
        result = self._result
        assert result is not None
        counts = result.counts()
        metrics: dict[str, float] = {"wall_time": result.wall_time, "trials": len(result.records)}
        metrics.update({f"trials_{k}": v for k, v in counts.items()})
        tags = {"nbtune.stop_reason": result.stop_reason}
        best = result.best_trial
        if best is not None and best.value is not None:
            metrics[f"best_{result.metric}"] = best.value
            tags.update({f"best.{k}": shorten(v, _TAG_MAX) for k, v in best.params.items()})
            if best.mlflow_run_id:
                tags["nbtune.best_run_id"] = best.mlflow_run_id
        self._log(self._parent_id, metrics, tags=tags, step=len(result.records))
        if result.stop_reason in ("interrupted", "cancelled"):
            status = "KILLED"
        elif best is None or result.stop_reason == "error":
            status = "FAILED"
        else:
            status = "FINISHED"
        self._update(self._parent_id, status, end_ms)

    def _summary_files(self) -> None:
        """The parent's files: the trials table, durations, parallel coordinates and importance (with enough trials).

        Written after the search's data, while the notebook goes on: the figures take a second or so.
        """
        from nbtune.analysis._importance import NotEnoughTrials, importance
        from nbtune.ui import _analysis_plots

        result = self._result
        assert result is not None
        self._client.log_text(self._parent_id, result.to_pandas().to_csv(index=False), "trials.csv")
        title = f"{len(result.records)} trials, {result.wall_time:.1f} s wall time"
        figure = plots.durations(result.records, title, size=(6.0, 3.5))
        self._client.log_figure(self._parent_id, figure, "durations.png")
        if not any(r.status == "ok" for r in result.records) or not result.param_names:
            return
        figure = _analysis_plots.parallel_coordinates(result.records, result.param_names, result.metric, result.mode)
        self._client.log_figure(self._parent_id, figure, "parallel_coordinates.png")
        try:
            table = importance(result.records, result.param_names, result.metric)
        except NotEnoughTrials:
            return
        self._client.log_text(self._parent_id, table.to_csv(index=False), "importance.csv")
        self._client.log_figure(self._parent_id, _analysis_plots.importance(table), "importance.png")

    def _log(
        self,
        run_id: str,
        metrics: Mapping[str, float] | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        step: int = 0,
        ms: int | None = None,
        extra: tuple[list[Any], list[Any], list[Any]] | None = None,
    ) -> None:
        """One `log_batch` (more only past MLflow's limits); `extra`: (metrics, params, tags) entities before ours."""
        from mlflow.entities import Metric, Param, RunTag

        ts = _now_ms() if ms is None else ms
        more_metrics, more_params, more_tags = extra or ([], [], [])
        log_batches(
            self._client,
            run_id,
            [*more_metrics, *(Metric(k, float(v), ts, step) for k, v in (metrics or {}).items())],
            [*more_params, *(Param(k, shorten(str(v), _PARAM_MAX)) for k, v in (params or {}).items())],
            [*more_tags, *(RunTag(k, shorten(str(v), _TAG_MAX)) for k, v in (tags or {}).items())],
        )

    def _upload(self, run_id: str, local_dir: str, path: str | None = None) -> None:
        """Upload a directory's files as a run's artifacts (straight to its repository when the run is ours)."""
        uri = self._artifact_uris.get(run_id)
        if uri is None:
            self._client.log_artifacts(run_id, local_dir, path)
            return
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        uris: Any = importlib.import_module("mlflow.utils.uri")  # untyped
        # MlflowClient.log_artifacts looks the run up first, only to find this URI; built as it builds it
        # (a server's `mlflow-artifacts:` URI resolves through the tracking URI).
        uri = uris.add_databricks_profile_info_to_artifact_uri(uri, self._uri)
        repository: Any = get_artifact_repository(uri, tracking_uri=self._uri)
        repository.log_artifacts(local_dir, path)

    def _update(self, run_id: str, status: str, end_ms: int | None) -> None:
        """Set a run's status; through the store, because `set_terminated` prints a link per run."""
        from mlflow.entities import RunStatus

        if self._store is not None:
            self._store.update_run_info(run_id, RunStatus.from_string(status), end_ms, None)
        elif status != "RUNNING":
            self._client.set_terminated(run_id, status, end_ms)


_EXIT_WAIT = 60.0  # seconds a Python process that ends waits for MLflow writes still on their way
_exit_hook = False


def _finish_at_exit() -> None:
    """Make a script that ends right after a search wait (a while) for its MLflow writes first."""
    global _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(wait_for_background, _EXIT_WAIT)


def wait_for_background(timeout: float, uri: str | None = None) -> bool:
    """Wait (at most `timeout` s in all) for earlier searches' writers (to `uri`) to catch up; True if they did."""
    deadline = time.monotonic() + timeout
    waiting = [t for t in list(_BACKGROUND) if uri is None or t.uri == uri]
    return all(tracker.wait(max(0.0, deadline - time.monotonic())) for tracker in waiting)


def _unreachable(exc: BaseException) -> bool:
    """Whether an error says the store could not be reached (rather than that it refused what was sent)."""
    text = str(exc)
    if text.startswith("API request to ") and " failed with " in text:
        return True  # MLflow's HTTP client, after its own retries: refused, reset, timed out
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return getattr(exc, "error_code", None) == "TEMPORARILY_UNAVAILABLE"


def _warm_up() -> None:
    """Load pandas and matplotlib (fonts included) now, so the end of the search does not wait for them."""
    import io

    import pandas  # noqa: F401
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1, 1))
    FigureCanvasAgg(fig)
    fig.add_subplot().set_title("warm-up")
    fig.savefig(io.BytesIO(), format="png")
