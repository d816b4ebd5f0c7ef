"""`--resume`: rebuild a search's TuneResult (records and hyperopt Trials) from its MLflow runs alone."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.tracking import _tracker
from nbtune.tracking._links import RunLinks, links_for
from nbtune.tracking._tracker import CELL_HASH_TAG, CURVE_TAG, cell_hash
from nbtune.trial._records import Curve, TrialRecord

_FINISHED = ("ok", "failed", "pruned")  # trials a resumed search keeps (cancelled ones are run again)
_HISTORY_THREADS = 8  # metric histories are one call per run and metric: a remote store answers them in parallel


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

    stall = _tracker.STALL_SECONDS
    if not _tracker.wait_for_background(stall, uri):  # an earlier search's trials still wait for the store
        raise TuneUsageError(f"--resume: MLflow at {uri} did not answer in {stall:.0f} s")
    # MLflow's HTTP client retries an unreachable server for minutes; local stores are only ever slow.
    thread = threading.Thread(target=load, name="nbtune-resume", daemon=True)
    thread.start()
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
    finished = _finished(child_runs(client, parent))
    result = rebuild(finished, options, space, links, _histories(client, finished))
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


def child_runs(client: Any, parent: Any) -> list[Any]:
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


def _finished(children: list[Any]) -> list[Any]:
    """The child runs a resumed search keeps, in trial order."""
    finished = [r for r in children if r.data.tags.get("nbtune.status") in _FINISHED and "nbtune.vals" in r.data.tags]
    finished.sort(key=lambda r: (int(r.data.tags.get("nbtune.trial", 0)), r.info.start_time or 0))
    return finished


def _reported(run: Any) -> tuple[int, list[str]]:
    """How many reports a trial's run holds and their metric names (its CURVE_TAG; none if unreadable)."""
    try:
        tag = json.loads(run.data.tags.get(CURVE_TAG) or "{}")
        return int(tag.get("reports", 0)), [str(k) for k in tag.get("keys", [])]
    except (ValueError, TypeError, AttributeError):
        return 0, []


def _histories(client: Any, runs: Sequence[Any]) -> dict[str, list[Any]]:
    """Run id -> the history points of its reported metrics, for the runs that reported (and only those)."""
    wanted = [(run.info.run_id, key) for run in runs for key in _reported(run)[1]]
    if not wanted:
        return {}
    # Named nbtune-*: MLflow's retry messages on these threads stay out of the notebook.
    with ThreadPoolExecutor(min(_HISTORY_THREADS, len(wanted)), thread_name_prefix="nbtune-resume") as pool:
        found = list(pool.map(lambda pair: client.get_metric_history(*pair), wanted))
    histories: dict[str, list[Any]] = {}
    for (run_id, _), points in zip(wanted, found, strict=True):
        histories.setdefault(run_id, []).extend(points)
    return histories


def _curve(points: Sequence[Any], reports: int, keys: Sequence[str]) -> tuple[Curve, dict[str, float]]:
    """A trial's curve (its first `reports` timestamps) and the final values logged after them.

    The tracker gives each report its own timestamp and logs the trial's final values later still.
    """
    order = {key: i for i, key in enumerate(keys)}
    by_ms: dict[int, list[Any]] = {}
    for point in points:
        by_ms.setdefault(int(point.timestamp), []).append(point)
    stamps = sorted(by_ms)
    curve: Curve = []
    for ms in stamps[:reports]:
        group = sorted(by_ms[ms], key=lambda p: order.get(p.key, len(order)))
        curve.append((int(group[0].step), {p.key: float(p.value) for p in group}))
    finals = {p.key: float(p.value) for ms in stamps[reports:] for p in by_ms[ms]}
    return curve, finals


def rebuild(
    finished: list[Any],
    options: TuneOptions,
    space: SearchSpace,
    links: RunLinks,
    histories: Mapping[str, list[Any]] | None = None,
) -> TuneResult:
    """Records and hyperopt docs from finished child runs, in trial order (`_finished`), with their curves."""
    from nbtune.search._history import restore  # hyperopt loads only when a search resumes

    result = TuneResult(options.metric, options.mode, space.names, options.log_metrics)
    for number, run in enumerate(finished):
        record = _record(number, run, options, space, (histories or {}).get(run.info.run_id, []))
        record.mlflow_run_id = run.info.run_id
        record.mlflow_url = links.run_url(run.info.experiment_id, run.info.run_id)
        record.model_uri = run.data.tags.get("nbtune.model")
        result.records.append(record)
    times = [(_time(r.info.start_time), _time(r.info.end_time)) for r in finished]
    restore(result.trials, result.records, options.metric, options.mode, times)
    return result


def _record(number: int, run: Any, options: TuneOptions, space: SearchSpace, history: Sequence[Any]) -> TrialRecord:
    tags, metrics = run.data.tags, dict(run.data.metrics)
    reports, keys = _reported(run)
    curve: Curve = []
    if reports:
        # A reported metric's latest value is the trial's final one only if the trial logged one at its end.
        curve, finals = _curve(history, reports, keys)
        metrics = {k: v for k, v in metrics.items() if k not in keys} | finals
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
        step=int(tags.get("nbtune.step", 0)),
        curve=curve,
    )


def _time(ms: int | None) -> dt.datetime | None:
    # hyperopt keeps naive UTC datetimes (coarse_utcnow)
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).replace(tzinfo=None) if ms else None
