"""What runs in a Spark task for each group: a serial hyperopt search over the group's rows.

Spark workers import this module: keep its imports light (the standard library, nbtune.trial);
hyperopt, numpy and pandas are imported inside the task, where the pandas UDF has them anyway.
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from nbtune.groups._channel import connect, send
from nbtune.trial._objective import Objective
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest

GID, SALT = "__nbtune_gid", "__nbtune_salt"  # columns the driver adds: the group's id and its partition's salt

# The one row each group returns (names, Spark type names); the driver maps `gid` back to its keys.
RESULT_FIELDS: tuple[tuple[str, str], ...] = (
    ("gid", "long"),
    ("status", "string"),
    ("best_value", "double"),
    ("best_params", "string"),
    ("trials", "long"),
    ("failed", "long"),
    ("rows", "long"),
    ("duration", "double"),
    ("error", "string"),
    ("traceback", "string"),
    ("host", "string"),
    ("records", "string"),
    ("model", "binary"),  # --log-model: the best trial's model, zipped (only when the channel did not carry it)
    ("model_error", "string"),
)


@dataclass(kw_only=True)
class GroupTask:
    """Everything a task needs to search its groups; pickled once into the Spark job."""

    objective: Objective
    space: Any  # cell._space.SearchSpace (imports nothing heavy until used)
    data: str  # the variable the cell reads the group's rows from
    max_evals: int
    algo: str
    max_failures: int | None
    early_stop: int | None
    trial_timeout: float | None
    log_model: bool = False  # keep the best trial's `model` and send it, saved with its MLflow flavour
    first: dict[str, Any] | None = None  # --start-from-cell: every group's first trial, in hyperopt's units
    seeds: dict[int, int | None] = field(default_factory=dict)  # group id -> its seed (from its keys)
    address: tuple[str, int] | None = None  # the driver's GroupChannel
    secret: bytes = field(default=b"", repr=False)


def group_seed(seed: int | None, key: tuple[Any, ...]) -> int | None:
    """A group's own reproducible seed: --seed mixed with the group's key values (None stays random)."""
    if seed is None:
        return None
    digest = hashlib.sha256(f"{seed}\x00{key!r}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


@dataclass(kw_only=True)
class _KeepsBestModel(Objective):
    """A group's objective: remembers the `model` of its best trial so far (for --log-model)."""

    best: tuple[float, Any] | None = None

    def _read_metrics(self, ns: Any, outcome: TrialOutcome) -> None:
        super()._read_metrics(ns, outcome)
        if outcome.status == "ok" and outcome.value is not None and "model" in ns:
            loss = outcome.value if self.mode == "min" else -outcome.value
            if self.best is None or loss < self.best[0]:
                self.best = (loss, ns["model"])


def search_group(task: GroupTask, rows: Any, seed: int | None) -> tuple[list[TrialRecord], Any]:
    """Up to --max-evals trials over one group's rows, one after another: their records, the best `model`.

    The model is None without --log-model (or when the cell assigned none).
    """
    from hyperopt import Trials

    from nbtune.search._history import History

    values = {f.name: getattr(task.objective, f.name) for f in fields(Objective) if f.init}
    values["captured"] = {**task.objective.captured, task.data: rows}
    objective: Objective = _KeepsBestModel(**values) if task.log_model else Objective(**values)
    history = History(Trials(), task.space, task.algo, seed, max_evals=task.max_evals, first=task.first)  # type: ignore[arg-type]
    records: list[TrialRecord] = []
    failures, best, since_best = 0, None, 0
    sign = 1.0 if objective.mode == "min" else -1.0
    for number in range(task.max_evals):
        suggested = history.suggest()
        if suggested is None:  # a small space, exhausted
            break
        tid, vals = suggested
        params = task.space.values(vals)
        outcome = objective.run(TrialRequest(tid=tid, params=params, timeout=task.trial_timeout))
        record = TrialRecord.from_outcome(outcome, number=number, params=params, vals=vals)
        record.output = ""  # a group's many trials' output would swamp the result; errors are kept
        history.store(record, objective.metric, objective.mode)
        records.append(record)
        if outcome.fatal:  # a mistake in the cell itself: every trial would fail the same way
            break
        if record.status != "ok":
            failures += 1
            if task.max_failures is not None and failures >= task.max_failures:
                break
            continue
        if best is None or sign * (record.value or 0.0) < sign * best:
            best, since_best = record.value, 0
        else:
            since_best += 1
            if task.early_stop is not None and since_best >= task.early_stop:
                break
    kept = objective.best if isinstance(objective, _KeepsBestModel) else None
    return records, kept[1] if kept else None


def with_model(row: dict[str, Any], model: Any) -> dict[str, Any]:
    """--log-model: the row with the best trial's model saved by its MLflow flavour, or why it could not be."""
    if row["status"] != "ok":
        return row
    if model is None:
        return {**row, "model_error": "--log-model saves the variable 'model', which the cell never assigned"}
    from nbtune.trial._model_export import export_model  # MLflow loads only when asked to

    try:
        return {**row, "model": export_model(model)}
    except Exception as exc:
        return {**row, "model_error": f"{type(exc).__name__}: {exc}".splitlines()[0]}


def group_row(gid: int, rows: int, records: list[TrialRecord], mode: str, started: float) -> dict[str, Any]:
    """The group's result row: its best trial, counts, first error and every trial as JSON."""
    ok = [r for r in records if r.status == "ok" and r.value is not None]
    sign = 1.0 if mode == "min" else -1.0
    best = min(ok, key=lambda r: (sign * (r.value or 0.0), r.number)) if ok else None
    failed = [r for r in records if r.status != "ok"]
    first = failed[0] if failed else None
    return {
        "gid": gid,
        "status": "ok" if best is not None else "failed",
        "best_value": best.value if best else None,
        "best_params": _json(best.params) if best else None,
        "trials": len(records),
        "failed": len(failed),
        "rows": rows,
        "duration": time.time() - started,
        "error": None if best is not None or first is None else first.error,
        "traceback": first.traceback if first else None,
        "host": socket.gethostname(),
        "records": _json([_trial(r) for r in records]),
        "model": None,
        "model_error": None,
    }


def failed_row(gid: int, rows: int, error: str, started: float) -> dict[str, Any]:
    """The row of a group whose search could not run at all (e.g. too large for the task's memory)."""
    return {
        **group_row(gid, rows, [], "min", started),
        "error": error,
        "traceback": traceback.format_exc(),
    }


def _trial(r: TrialRecord) -> dict[str, Any]:
    return {
        "trial": r.number,
        "status": r.status,
        "value": r.value,
        "duration": r.duration,
        "params": r.params,
        "log_metrics": r.log_metrics,
        "error": r.error,
    }


def _json(value: Any) -> str:
    return json.dumps(value, default=_plain)


def _plain(value: Any) -> Any:
    """A value JSON cannot hold (a numpy scalar, an object) as one it can."""
    item = getattr(value, "item", None)
    return item() if callable(item) else repr(value)


def group_function(task: GroupTask) -> Callable[[Any, Any], Any]:
    """The function `groupBy(SALT, GID).applyInPandas` calls with each group's key and rows."""
    state: dict[str, Any] = {}

    def run(key: tuple[Any, ...], pdf: Any) -> Any:
        import pandas as pd

        gid = int(key[1])
        rows = pdf.drop(columns=[GID, SALT]).reset_index(drop=True)
        if "conn" not in state:  # once per task: its groups share the connection
            from nbtune.spark._worker import limit_threads

            limit_threads(1)  # a task per core: numeric libraries' own threads would fight over the cores
            state["conn"] = connect(task.address, task.secret) if task.address else None
        state["conn"] = send(state["conn"], ("started", gid))
        started = time.time()
        try:
            records, model = search_group(task, rows, task.seeds.get(gid))
            row = group_row(gid, len(rows), records, task.objective.mode, started)
            if task.log_model:
                row = with_model(row, model)
        except MemoryError:
            row = failed_row(gid, len(rows), f"group too large for the task's memory ({len(rows)} rows)", started)
        except Exception as exc:  # nbtune's own failure around the trials: this group fails, the rest go on
            row = failed_row(gid, len(rows), f"{type(exc).__name__}: {exc}", started)
        state["conn"] = send(state["conn"], ("done", row))
        if state["conn"] is not None:  # the channel carried the model: the job's own row need not again
            row["model"] = None
        return pd.DataFrame([row], columns=[name for name, _ in RESULT_FIELDS])

    return run
