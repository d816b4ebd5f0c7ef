"""hyperopt's `Trials` documents, owned here alone: suggest, store, restore and read them back.

Nothing else in nbtune touches hyperopt's documents or its private API, so a resumed search teaches
the algorithm exactly what the live one did and a hyperopt upgrade has one place to break.
"""

from __future__ import annotations

import datetime as dt
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from hyperopt import Trials, anneal, base, rand, tpe
from hyperopt.utils import coarse_utcnow

from nbtune._options import Algo, Mode
from nbtune.cell._space import SearchSpace
from nbtune.trial._records import Status, TrialRecord

ALGORITHMS: dict[Algo, Callable[..., Any]] = {"tpe": tpe.suggest, "random": rand.suggest, "anneal": anneal.suggest}
_STATES: dict[Status, int] = {
    "ok": base.JOB_STATE_DONE,
    "failed": base.JOB_STATE_ERROR,
    "cancelled": base.JOB_STATE_CANCEL,
    "pruned": base.JOB_STATE_DONE,
}
_FINISHED = (base.JOB_STATE_DONE, base.JOB_STATE_ERROR, base.JOB_STATE_CANCEL)


def loss_of(value: float, mode: Mode | str) -> float:
    """What hyperopt minimises for a metric value."""
    return value if mode == "min" else -value


def plain_vals(vals: Mapping[str, Any]) -> dict[str, list[Any]]:
    """A hyperopt document's `misc.vals` with numpy scalars as plain numbers (JSON-ready, for MLflow)."""
    return {k: [int(v) if isinstance(v, numbers.Integral) else float(v) for v in vs] for k, vs in vals.items()}


def result_doc(record: TrialRecord, metric: str, mode: Mode | str) -> dict[str, Any]:
    """The `result` of a finished trial's document: what the algorithm learns from it.

    A pruned trial counts as done with the best value it reported, as Ray Tune's HyperOptSearch tells
    hyperopt of early-stopped trials: TPE then learns its region is poor (partial training only
    flatters a trial by little), instead of never hearing of it and sampling there again.
    """
    if record.status in ("ok", "pruned") and record.value is not None:
        return {
            "status": base.STATUS_OK,
            **({"pruned_at": record.step} if record.status == "pruned" else {}),
            "loss": loss_of(record.value, mode),
            metric: record.value,
            "duration": record.duration,
            **{f"log_{k}": v for k, v in record.log_metrics.items()},
        }
    return {"status": base.STATUS_FAIL, "error": record.error or "", "duration": record.duration}


class History:
    """The search's `Trials`: the algorithm suggests from it and learns each finished trial."""

    def __init__(self, trials: Trials, space: SearchSpace, algo: Algo, seed: int | None) -> None:
        self.trials = trials
        self._domain = base.Domain(_not_called, space.hyperopt_space())
        self._algo = space.grid_algo() if algo == "grid" else ALGORITHMS[algo]
        self._rng = np.random.default_rng(seed)

    def suggest(self) -> tuple[int, dict[str, list[Any]]] | None:
        """Book the algorithm's next trial: its id and values, or None when the space is exhausted."""
        trials = self.trials
        tids = trials.new_trial_ids(1)
        trials.refresh()
        docs = self._algo(tids, self._domain, trials, int(self._rng.integers(2**31 - 1)))
        if not docs:
            return None
        doc = docs[0]
        doc["state"] = base.JOB_STATE_RUNNING
        doc["book_time"] = coarse_utcnow()
        trials.insert_trial_docs([doc])
        trials.refresh()
        return doc["tid"], plain_vals(doc["misc"]["vals"])

    def store(self, record: TrialRecord, metric: str, mode: Mode | str) -> None:
        """Write a finished trial into its booked document, so the algorithm learns it."""
        doc = next(d for d in self.trials._dynamic_trials if d["tid"] == record.tid)
        doc["state"] = _STATES[record.status]
        doc["refresh_time"] = coarse_utcnow()
        doc["result"] = result_doc(record, metric, mode)
        if doc["result"]["status"] == base.STATUS_FAIL:
            doc["misc"]["error"] = (record.status, record.error or "")
        self.trials.refresh()


def restore(
    trials: Trials,
    records: Sequence[TrialRecord],
    metric: str,
    mode: Mode | str,
    times: Sequence[tuple[dt.datetime | None, dt.datetime | None]],
) -> None:
    """Rebuild finished trials' documents (`--resume`) exactly as `History.store` wrote them live."""
    tids = trials.new_trial_ids(len(records))  # reserved, so new trials never reuse an id
    docs = []
    for tid, record, (booked, refreshed) in zip(tids, records, times, strict=True):
        record.tid = tid
        result = result_doc(record, metric, mode)
        misc: dict[str, Any] = {"tid": tid, "cmd": None, "workdir": None, "vals": record.vals}
        misc["idxs"] = {k: [tid] if v else [] for k, v in record.vals.items()}
        if result["status"] == base.STATUS_FAIL:
            misc["error"] = (record.status, record.error or "")
        doc = trials.new_trial_docs([tid], [None], [result], [misc])[0]
        doc["state"] = _STATES[record.status]
        doc["book_time"], doc["refresh_time"] = booked, refreshed
        docs.append(doc)
    trials.insert_trial_docs(docs)
    trials.refresh()


def finished_docs(trials: Trials, seen: set[int]) -> list[dict[str, Any]]:
    """Finished documents not in `seen` (SparkTrials writes them on its own thread)."""
    return [d for d in list(trials._dynamic_trials) if d["tid"] not in seen and d["state"] in _FINISHED]


def doc_error(doc: Mapping[str, Any]) -> str | None:
    """The error hyperopt recorded in a failed document, if any."""
    error = doc["misc"].get("error")
    return str(error[1]) if error else None


def doc_cancelled(doc: Mapping[str, Any]) -> bool:
    """Whether hyperopt cancelled the trial of this document."""
    return bool(doc["state"] == base.JOB_STATE_CANCEL)


def stop_fmin(trials: Any, reason: str) -> bool:
    """Ask a running `fmin` over SparkTrials to stop; False if it was already asked."""
    if trials._fmin_cancelled:
        return False
    trials._fmin_cancelled, trials._fmin_cancelled_reason = True, reason
    return True


def fmin_timed_out(trials: Any) -> bool:
    """Whether SparkTrials stopped `fmin` on its own `timeout`."""
    return bool(trials._fmin_cancelled_reason == "fmin run timeout")


def _not_called(params: Any) -> float:  # pragma: no cover - hyperopt needs a function
    raise RuntimeError("nbtune evaluates trials through its executors")
