"""MLflow for a search per group: one parent run, a child run per group, per-trial runs only with --log-trials.

Written by one background thread as groups finish, so a slow store never holds the search; 1,000 groups
make 1,000 runs, not 20,000 (a run per trial would bury a tracking server).
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
import uuid
import warnings
from typing import Any

from nbtune._events import SearchInfo
from nbtune._options import TuneOptions
from nbtune._text import first_line, is_finite_number, shorten
from nbtune.groups._result import GroupOutcome, GroupsResult
from nbtune.groups._resume import BEST_TAG, BY_TAG, GROUP_TAG, Resumed, group_label
from nbtune.tracking._links import RunLinks, links_for
from nbtune.tracking._tracker import CELL_HASH_TAG, TrackingWarning, cell_hash, quiet_mlflow_logs, run_name

_FINISH_WAIT = 600.0  # seconds the end of a search waits for the group runs still being written
_STATUS = {"ok": "FINISHED", "failed": "FAILED", "cancelled": "KILLED", "pruned": "KILLED"}
_PARAM_MAX = 6000


class GroupTracker:
    """Writes the parent run and each finished group's run from a writer thread; warns once if MLflow fails."""

    def __init__(self, options: TuneOptions, info: SearchInfo, resumed: Resumed | None = None) -> None:
        self._options, self._info, self._resumed = options, info, resumed
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._write, name="nbtune-groups-mlflow", daemon=True)
        self._client: Any = None
        self._links = RunLinks(None)
        self._experiment_id = self._parent_id = ""
        self._result: GroupsResult | None = None
        self._error: str | None = None
        self._models: str | None = None  # --log-model: a directory holding each group's model for the router
        self._routed: list[tuple[list[Any], str]] = []  # (group key, its directory in self._models)

    def start(self, result: GroupsResult) -> None:
        """Open the parent run on the writer thread."""
        self._result = result
        self._thread.start()

    def group_finished(self, outcome: GroupOutcome) -> None:
        """Queue the group's run."""
        self._queue.put(("group", outcome))

    def finish(self, result: GroupsResult) -> None:
        """Close the parent run once every group's run is written; warn if MLflow failed."""
        if not self._thread.is_alive() and self._result is None:
            return  # never started (the search failed before its first group)
        self._queue.put(("end", result))
        self._thread.join(_FINISH_WAIT)
        if self._error:
            warnings.warn(f"nbtune: MLflow tracking stopped: {self._error}", TrackingWarning, stacklevel=2)

    def _write(self) -> None:
        try:
            self._open()
        except Exception as exc:
            self._error = first_line(exc)
        while True:
            kind, item = self._queue.get()
            if self._error:
                if kind == "end":
                    return
                continue
            try:
                if kind == "group":
                    self._group(item)
                else:
                    self._end(item)
                    return
            except Exception as exc:
                self._error = first_line(exc)

    def _open(self) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        quiet_mlflow_logs()
        opts, info, result = self._options, self._info, self._result
        assert result is not None
        client = self._client = MlflowClient(tracking_uri=opts.tracking_uri or mlflow.get_tracking_uri())
        self._links = links_for(client.tracking_uri, opts.mlflow_ui_url)
        if self._resumed is not None:  # --resume: the same parent run gets the new groups
            self._experiment_id, self._parent_id = self._resumed.experiment_id, self._resumed.parent_run_id
            client.update_run(self._parent_id, "RUNNING")
            result.parent_run_id = self._parent_id
            result.parent_url = self._links.run_url(self._experiment_id, self._parent_id)
            return
        name = opts.experiment or "nbtune"
        found = client.get_experiment_by_name(name)
        self._experiment_id = str(found.experiment_id if found else client.create_experiment(name))
        flags = {k: v for k, v in opts.logged().items() if v not in (None, "", ())}
        flags.update(by=",".join(opts.by), groups=len(result.outcomes), log_metrics=",".join(opts.log_metrics))
        tags = {
            "nbtune.search_id": uuid.uuid4().hex,
            CELL_HASH_TAG: cell_hash(info.source),
            "nbtune.metric": opts.metric,
            "nbtune.mode": opts.mode,
            "nbtune.params": json.dumps(info.param_names),
            BY_TAG: json.dumps(list(opts.by)),
        }
        parent = client.create_run(self._experiment_id, run_name=run_name(opts, info), tags=tags)
        self._parent_id = parent.info.run_id
        self._batch(self._parent_id, params={k: str(v) for k, v in flags.items()})
        client.log_text(self._parent_id, info.source, "cell.py")
        result.parent_run_id = self._parent_id
        result.parent_url = self._links.run_url(self._experiment_id, self._parent_id)

    def _group(self, g: GroupOutcome) -> None:
        """The group's run: its best parameters and value, counts, its trials table; --log-trials: a run per trial."""
        assert self._result is not None
        keys = dict(zip(self._result.keys, g.key, strict=True))
        label = ", ".join(f"{k}={v}" for k, v in keys.items())
        tags = {
            "mlflow.parentRunId": self._parent_id,
            GROUP_TAG: group_label(self._result.keys, g.key),
            BEST_TAG: shorten(json.dumps(g.best_params, default=str), 8000),
        }
        if g.error:
            tags["nbtune.error"] = shorten(g.error, 8000)
        run = self._client.create_run(self._experiment_id, run_name=shorten(label, 250), tags=tags)
        run_id = run.info.run_id
        metrics = {"trials": len(g.trials), "failed_trials": g.failed, "rows": g.rows, "duration": g.duration}
        if g.best_value is not None:
            metrics[self._options.metric] = g.best_value
        params = {**{f"group.{k}": str(v) for k, v in keys.items()}, **{k: str(v) for k, v in g.best_params.items()}}
        self._batch(run_id, params=params, metrics=metrics)
        self._client.log_text(run_id, json.dumps(g.trials, default=str, indent=1), "trials.json")
        if g.traceback and g.status == "failed":
            self._client.log_text(run_id, g.traceback, "traceback.txt")
        if g.model is not None:
            self._log_model(run_id, g)
        elif g.model_error:
            self._client.set_tag(run_id, "nbtune.model_error", shorten(g.model_error, 5000))
        if self._options.log_trials:
            for trial in g.trials:
                self._trial(run_id, label, trial)
        self._terminate(run_id, _STATUS.get(g.status, "FAILED"))
        g.run_id, g.mlflow_url = run_id, self._links.run_url(self._experiment_id, run_id)

    def _log_model(self, run_id: str, g: GroupOutcome) -> None:
        """The group's best model in its run (as `model`), and kept on disk for the router."""
        import tempfile

        from nbtune.trial._model_export import unpack_model

        if self._models is None:
            self._models = tempfile.mkdtemp(prefix="nbtune-router-")
        sub = f"group{len(self._routed)}"
        target = os.path.join(self._models, sub)
        unpack_model(g.model or b"", target)
        self._client.log_artifacts(run_id, target, "model")
        self._routed.append((list(g.key), sub))
        g.model, g.model_uri = None, f"runs:/{run_id}/model"  # the bytes are in MLflow now

    def _log_router(self, result: GroupsResult) -> None:
        """One pyfunc model in the parent run that sends each row to its group's model."""
        import shutil
        import tempfile

        from nbtune.groups._router import save_router

        assert self._models is not None
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = os.path.join(tmp, "router")
                save_router(path, result.keys, self._routed, self._models)
                self._client.log_artifacts(self._parent_id, path, "router")
            result.router_model_uri = f"runs:/{self._parent_id}/router"
        finally:
            shutil.rmtree(self._models, ignore_errors=True)

    def _trial(self, group_run: str, label: str, trial: dict[str, Any]) -> None:
        tags = {"mlflow.parentRunId": group_run}
        run = self._client.create_run(self._experiment_id, run_name=f"{label} trial {trial['trial']}", tags=tags)
        metrics = {k: v for k, v in trial.get("log_metrics", {}).items() if is_finite_number(v)}
        if is_finite_number(trial.get("value")):
            metrics[self._options.metric] = trial["value"]
        metrics["duration"] = trial.get("duration") or 0.0
        self._batch(run.info.run_id, params={k: str(v) for k, v in trial["params"].items()}, metrics=metrics)
        self._terminate(run.info.run_id, _STATUS.get(trial["status"], "FAILED"))

    def _end(self, result: GroupsResult) -> None:
        counts = result.group_counts()
        metrics = {f"groups_{s}": float(counts.get(s, 0)) for s in ("ok", "failed", "cancelled")}
        metrics["wall_time"] = result.wall_time
        self._batch(self._parent_id, metrics=metrics)
        self._client.log_text(self._parent_id, result.groups.to_csv(index=False), "groups.csv")
        if self._routed:
            self._log_router(result)
        status = "FINISHED" if result.stop_reason == "completed" else "KILLED"
        self._terminate(self._parent_id, status)

    def _batch(self, run_id: str, params: dict[str, str] | None = None, metrics: dict[str, Any] | None = None) -> None:
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        self._client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if is_finite_number(v)],
            params=[Param(k, shorten(v, _PARAM_MAX)) for k, v in (params or {}).items()],
        )

    def _terminate(self, run_id: str, status: str) -> None:
        """End a run; through the store when there is one, as `set_terminated` prints a link per run."""
        from mlflow.entities import RunStatus

        store = getattr(getattr(self._client, "_tracking_client", None), "store", None)
        if store is None:
            self._client.set_terminated(run_id, status)
        else:
            store.update_run_info(run_id, RunStatus.from_string(status), int(time.time() * 1000), None)
