"""`--resume`: rebuild a search's TuneResult (records and hyperopt Trials) from its MLflow runs alone."""

from __future__ import annotations

import datetime as dt
import json
import threading
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.tracking import _tracker
from nbtune.tracking._links import RunLinks, links_for
from nbtune.tracking._tracker import CELL_HASH_TAG, cell_hash
from nbtune.trial._records import TrialRecord

_FINISHED = ("ok", "failed")  # trials a resumed search keeps (cancelled ones are run again)


def load_bounded(options: TuneOptions, source: str, space: SearchSpace) -> TuneResult | None:
    """load_search, where a store that fails is a one-line error and a silent server does not hang the cell."""
    import mlflow

    _tracker.quiet_mlflow_logs()
    uri = options.tracking_uri or str(mlflow.get_tracking_uri())
    box: dict[str, Any] = {}

    def load() -> None:
        try:
            box["result"] = load_search(options, source, space)
        except Exception as exc:
            box["error"] = exc

    # MLflow's HTTP client retries an unreachable server for minutes; local stores are only ever slow.
    thread = threading.Thread(target=load, name="nbtune-resume", daemon=True)
    thread.start()
    stall = _tracker.STALL_SECONDS
    thread.join(stall if uri.startswith(("http:", "https:", "databricks")) else None)
    if thread.is_alive():
        raise TuneUsageError(f"--resume: MLflow at {uri} did not answer in {stall:.0f} s")
    error = box.get("error")
    if isinstance(error, TuneUsageError):
        raise error
    if error is not None:
        first = (str(error).strip().splitlines() or [""])[0][:200]
        raise TuneUsageError(f"--resume: cannot read MLflow at {uri}: {type(error).__name__}: {first}")
    result: TuneResult | None = box.get("result")
    return result


def load_search(options: TuneOptions, source: str, space: SearchSpace) -> TuneResult | None:
    """The search to continue (`--resume RUN_ID`, or the last one of this cell), None if there is none yet."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=options.tracking_uri)
    if options.resume:
        try:
            parent = client.get_run(options.resume)
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            raise TuneUsageError(f"--resume {options.resume}: no such MLflow run in {client.tracking_uri}") from None
        if parent.data.tags.get("mlflow.parentRunId"):
            raise TuneUsageError(f"--resume {options.resume} is one trial's run; pass its search's (parent) run id")
        if CELL_HASH_TAG not in parent.data.tags:
            raise TuneUsageError(f"--resume {options.resume} is not a %%tune search")
    else:
        parent = _last_search(client, options, cell_hash(source))
        if parent is None:
            return None
    stored_metric = parent.data.tags.get("nbtune.metric", options.metric)
    if stored_metric != options.metric:
        raise TuneUsageError(
            f"--resume: run {parent.info.run_id} optimised '{stored_metric}', this search '{options.metric}'"
        )
    links = links_for(client.tracking_uri, options.mlflow_ui_url)
    result = rebuild(_children(client, parent), options, space, links)
    result.parent_run_id = parent.info.run_id
    result.parent_url = links.run_url(parent.info.experiment_id, parent.info.run_id)
    result.wall_time = float(parent.data.metrics.get("wall_time", 0.0))
    return result


def _last_search(client: Any, options: TuneOptions, digest: str) -> Any:
    if options.experiment is None:
        from mlflow.tracking.fluent import _get_experiment_id

        experiment_id = str(_get_experiment_id())
    else:
        experiment = client.get_experiment_by_name(options.experiment)
        if experiment is None:
            return None
        experiment_id = experiment.experiment_id
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{CELL_HASH_TAG}` = '{digest}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


def _children(client: Any, parent: Any) -> list[Any]:
    """Every child run of a parent run, all pages."""
    runs: list[Any] = []
    token = None
    while True:
        page = client.search_runs(
            [parent.info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
            max_results=1000,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def rebuild(children: list[Any], options: TuneOptions, space: SearchSpace, links: RunLinks) -> TuneResult:
    """Records and hyperopt docs from finished child runs (ok and failed; cancelled ones are run again)."""
    from nbtune.search._history import restore  # hyperopt loads only when a search resumes

    result = TuneResult(options.metric, options.mode, space.names, options.log_metrics)
    finished = [r for r in children if r.data.tags.get("nbtune.status") in _FINISHED and "nbtune.vals" in r.data.tags]
    finished.sort(key=lambda r: (int(r.data.tags.get("nbtune.trial", 0)), r.info.start_time or 0))
    for number, run in enumerate(finished):
        record = _record(number, run, options, space)
        record.mlflow_run_id = run.info.run_id
        record.mlflow_url = links.run_url(run.info.experiment_id, run.info.run_id)
        record.model_uri = run.data.tags.get("nbtune.model")
        result.records.append(record)
    times = [(_time(r.info.start_time), _time(r.info.end_time)) for r in finished]
    restore(result.trials, result.records, options.metric, options.mode, times)
    return result


def _record(number: int, run: Any, options: TuneOptions, space: SearchSpace) -> TrialRecord:
    tags, metrics = run.data.tags, run.data.metrics
    vals: dict[str, list[Any]] = json.loads(tags["nbtune.vals"])
    try:
        if space.custom is None and set(vals) != set(space.names):
            raise KeyError(sorted(vals))
        params = space.values(vals)
    except Exception:
        raise TuneUsageError(
            f"--resume: the search space changed since run {tags.get('mlflow.parentRunId')}; start a new search"
        ) from None
    status = tags["nbtune.status"]
    value = metrics.get(options.metric)
    if status == "ok" and value is None:
        status = "failed"  # the metric never reached MLflow: the trial cannot teach the algorithm
    log_metrics: dict[str, Any] = {}
    for name in options.log_metrics:
        if name in metrics:
            log_metrics[name] = metrics[name]
        elif f"log.{name}" in tags:
            log_metrics[name] = tags[f"log.{name}"]
    return TrialRecord(
        number=number,
        tid=-1,  # restore() gives it a fresh id
        params=params,
        vals=vals,
        status=status,
        value=value,
        log_metrics=log_metrics,
        duration=float(metrics.get("duration", 0.0)),
        error=tags.get("nbtune.error"),
        host=tags.get("nbtune.host", ""),
    )


def _time(ms: int | None) -> dt.datetime | None:
    # hyperopt keeps naive UTC datetimes (coarse_utcnow)
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(tzinfo=None) if ms else None
