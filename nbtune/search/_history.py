"""hyperopt's `Trials` documents, owned here alone: suggest, store, restore and read them back.

Nothing else in nbtune touches hyperopt's documents or its private API, so a resumed search teaches
the algorithm exactly what the live one did and a hyperopt upgrade has one place to break.

Bookkeeping is incremental: a booked trial is appended to `Trials` and a finished one updated in
place (`Trials.trials` kept as `refresh()` would leave it), instead of hyperopt's O(n) `refresh()`
per trial. The algorithm does not read `Trials` itself but a `Request`: a window of finished
documents (`Window`) plus the suggestions still pending, so its cost stays flat at large histories.
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import math
import numbers
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hyperopt import Trials, anneal, base, rand, tpe
from hyperopt.fmin import generate_trial
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
_VISIBLE = frozenset(base.JOB_VALID_STATES)  # the states `Trials.trials` (and so the algorithm) keeps


@dataclass(frozen=True)
class Window:
    """Which finished trials an algorithm conditions on: the `best` by loss plus the `recent` latest.

    `best=None` is the whole history: hyperopt's own behaviour, O(n) a suggestion.
    """

    best: int | None
    recent: int = 0
    same_good: bool = True  # TPE: scale gamma so its "good" group is the whole history's (see `_tpe_gamma`)


UNBOUNDED = Window(None)
# TPE's window, chosen by measurement (benchmarks/bench_tpe.py, 1,000 serial trials, median of 5
# seeds): best 50 + recent 200 reached 0.39893 on Branin (whole history 0.40461) and -3.18945 on
# Hartmann-6 (whole history -3.16907), at a flat ~250 documents a suggestion however long the
# search. What makes it as good: the window keeps the best trials and `_tpe_gamma` makes TPE's
# "good" group (the best ceil(0.25 sqrt(n)), at most 25) exactly the whole history's; only the
# "bad" group is a sample (the recent 200, where hyperopt's linear forgetting puts the weight
# anyway). Without that gamma (TPE's own split of the window) Branin got worse: 0.41694 with
# 50:200, 0.41407 with 25:100. `best` must stay >= 25 for the good group to be exact.
TPE_WINDOW = Window(best=50, recent=200)
# Anneal starts from one of the best trials, drawn from a geometric law of mean 2: one beyond the
# best 64 comes up with probability 2^-64, so this window changes nothing; its shrinking, which
# counts every trial, stays exact (`_Anneal`).
ANNEAL_WINDOW = Window(best=64)
# The liar: a pending trial enters the algorithm's documents with this loss. TPE splits trials by
# rank only, so any loss worse than the good group's is the same: +inf (hyperopt's own value for a
# running trial, and Optuna's constant_liar) puts pending points in the "bad" group, and the next
# suggestion leans away from them instead of piling onto the same promising spot.
LIAR_LOSS = math.inf
_TPE_GAMMA = 0.25  # hyperopt's default
# TPE's random start-up: hyperopt's 20 trials, but at most a third of a smaller budget (at least 5, for a
# first model to fit). With 20 a 16-trial search never leaves it: it is a random search (issue 16's
# benchmark). Optuna starts its TPE after 10.
_TPE_STARTUP, _TPE_MIN_STARTUP = 20, 5


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


@dataclass
class Proposal:
    """A computed suggestion: its reserved id, hyperopt's document and its values (no document: space exhausted)."""

    tid: int
    doc: dict[str, Any] | None = None
    vals: dict[str, list[Any]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Pending:
    """A suggestion whose trial has not finished; `doc` (the liar's) is set once it is computed."""

    tid: int
    doc: dict[str, Any] | None = None


@dataclass(frozen=True)
class Request:
    """What one suggestion is computed from, frozen when it was asked for (so it is reproducible)."""

    tid: int
    seed: int
    finished: list[dict[str, Any]]  # the window of finished documents
    pending: list[_Pending]  # earlier suggestions whose trials had not finished, computed before this one
    booked: int  # grid: points booked before this one
    active: dict[str, int]  # anneal: finished documents using each parameter
    visible: int = 0  # documents the whole history would show the algorithm (finished and pending)
    point: Mapping[str, Any] | None = None  # given values instead of the algorithm's (--start-from-cell)


class _Window:
    """The finished documents a `Window` keeps, updated one trial at a time (O(best) at worst)."""

    def __init__(self, window: Window) -> None:
        self.best, self.recent = window.best, window.recent
        self._docs: dict[int, dict[str, Any]] = {}
        self._ranked: list[tuple[float, int]] = []  # (loss, tid) of the best, best first
        self._in_best: set[int] = set()
        self._latest: deque[int] = deque()
        self._in_latest: set[int] = set()

    def add(self, doc: dict[str, Any], loss: float) -> None:
        tid = doc["tid"]
        self._docs[tid] = doc
        if self.best is None:
            return
        if self.recent:
            self._latest.append(tid)
            self._in_latest.add(tid)
            if len(self._latest) > self.recent:
                old = self._latest.popleft()
                self._in_latest.discard(old)
                self._drop_unless_kept(old)
        if math.isfinite(loss):
            bisect.insort(self._ranked, (loss, tid))
            self._in_best.add(tid)
            if len(self._ranked) > self.best:
                worst = self._ranked.pop()[1]
                self._in_best.discard(worst)
                self._drop_unless_kept(worst)
        self._drop_unless_kept(tid)

    def _drop_unless_kept(self, tid: int) -> None:
        if tid not in self._in_best and tid not in self._in_latest:
            self._docs.pop(tid, None)

    def docs(self) -> list[dict[str, Any]]:
        return list(self._docs.values())


class _View:
    """What an algorithm reads of `Trials`: the documents it conditions on, and how to make a new one."""

    def __init__(self, docs: Sequence[Any], template: Trials) -> None:
        self.trials = docs
        self._template = template

    def __len__(self) -> int:
        return len(self.trials)

    def new_trial_docs(self, *args: Any) -> Any:
        return self._template.new_trial_docs(*args)  # builds documents only: it changes no `Trials`


class _Booked:
    """`--algo grid` asks only how many points were booked before: a length, without n documents."""

    def __init__(self, n: int) -> None:
        self._n = n

    def __len__(self) -> int:
        return self._n


class _Anneal(anneal.AnnealingAlgo):  # type: ignore[misc]  # hyperopt is untyped
    """hyperopt's annealing on a window, shrinking by the count of every trial as on the whole history."""

    def __init__(self, domain: Any, trials: Any, seed: int, counts: Mapping[str, int]) -> None:
        super().__init__(domain, trials, seed)
        self._counts = counts

    def shrinking(self, label: str) -> float:
        return 1 / (1 + self._counts.get(label, 0) * float(self.shrink_coef))


def _tpe_gamma(visible: int, shown: int) -> float:
    """The gamma that gives TPE, shown `shown` documents, the "good" group it would pick from `visible`.

    TPE's good group is the best ceil(gamma sqrt(n)) of the n documents it reads (at most 25); the
    window holds the best trials, so scaling gamma by sqrt(visible / shown) makes the good group the
    very same trials as on the whole history. Only the "bad" group is then a sample (the window's rest).
    """
    if shown == 0 or visible <= shown:
        return _TPE_GAMMA
    return _TPE_GAMMA * math.sqrt(visible / shown) * (1 - 1e-9)  # no ceil() one up from rounding


def tpe_startup(max_evals: int | None) -> int:
    """How many random trials TPE starts with, for a search of `max_evals` trials (None: no bound)."""
    if max_evals is None:
        return _TPE_STARTUP
    return max(_TPE_MIN_STARTUP, min(_TPE_STARTUP, max_evals // 3))


def _algorithm(algo: Algo, space: SearchSpace, max_evals: int | None) -> Callable[..., Any]:
    """The suggest function of `--algo` (looked up now, so a test can wrap hyperopt's)."""
    if algo == "grid":
        return space.grid_algo()  # type: ignore[no-any-return]
    if algo == "tpe":  # verbose formats an O(n) log line
        return functools.partial(tpe.suggest, verbose=False, n_startup_jobs=tpe_startup(max_evals))
    chosen: Callable[..., Any] = {"random": rand.suggest, "anneal": anneal.suggest}[algo]
    return chosen


class History:
    """The search's `Trials`: the algorithm suggests from it and learns each finished trial.

    `request` (on the search's thread) freezes what a suggestion is computed from; `compute` (on any
    one thread, in request order) runs the algorithm; `book` adds a suggestion as a running trial;
    `store` writes its end; `release` gives back suggestions never booked (so none is a phantom).
    """

    def __init__(
        self,
        trials: Trials,
        space: SearchSpace,
        algo: Algo,
        seed: int | None,
        window: Window | None = None,
        max_evals: int | None = None,  # the search's budget, which sets TPE's random start-up
        first: Mapping[str, Any] | None = None,  # a fresh search's first trial, in hyperopt's units
    ) -> None:
        self.trials = trials
        self.algo = algo
        self._domain = base.Domain(_not_called, space.hyperopt_space())
        self._algo = _algorithm(algo, space, max_evals)
        self._values = space.values
        self._rng = np.random.default_rng(seed)
        default = {"tpe": TPE_WINDOW, "anneal": ANNEAL_WINDOW}.get(algo, UNBOUNDED)
        self.window = window or default
        self._window = _Window(self.window)
        self._done = 0  # finished documents in `Trials.trials`
        self._pending: dict[int, _Pending] = {}
        self._active: Counter[str] = Counter()  # finished documents using each parameter (anneal)
        trials.refresh()  # once, for a resumed search's documents; after this, kept up to date here
        self._docs: dict[int, dict[str, Any]] = {d["tid"]: d for d in trials._dynamic_trials}
        self._booked = len(self._docs)  # grid points booked, failed ones too: each point runs once
        self._first = first if not self._docs else None  # a resumed search started from it already
        for doc in trials.trials:
            self._learn(doc)

    def request(self) -> Request:
        """Reserve the next suggestion's id and freeze what it is computed from (the search's thread)."""
        tid = self.trials.new_trial_ids(1)[0]
        seed = int(self._rng.integers(2**31 - 1))
        uses_history = self.algo in ("tpe", "anneal")
        req = Request(
            tid=tid,
            seed=seed,
            finished=self._window.docs() if uses_history else [],
            pending=list(self._pending.values()) if uses_history else [],
            booked=self._booked,
            active=dict(self._active) if self.algo == "anneal" else {},
            visible=self._done + len(self._pending),
            point=self._first,
        )
        self._first = None
        self._pending[tid] = _Pending(tid)
        self._booked += 1
        return req

    def compute(self, req: Request) -> Proposal:
        """Run the algorithm for a request (any one thread, in request order); reads no live state."""
        pending = [p.doc for p in req.pending if p.doc is not None]
        if req.point is not None:
            docs = self._given(req.tid, req.point)
        elif self.algo == "grid":
            view = _View(_Booked(req.booked), self.trials)  # type: ignore[arg-type]
            docs = self._algo([req.tid], self._domain, view, req.seed)
        elif self.algo == "anneal":
            view = _View([*req.finished, *pending], self.trials)
            counts = Counter(req.active)
            for doc in pending:
                counts.update(k for k, v in doc["misc"]["vals"].items() if len(v))
            docs = _Anneal(self._domain, view, req.seed, counts)(req.tid)
        else:
            view = _View([*req.finished, *pending], self.trials)
            if self.algo == "tpe" and self.window.best is not None and self.window.same_good:
                gamma = _tpe_gamma(req.visible, len(view))
                docs = self._algo([req.tid], self._domain, view, req.seed, gamma=gamma)
            else:
                docs = self._algo([req.tid], self._domain, view, req.seed)
        if not docs:
            return Proposal(req.tid)
        doc = docs[0]
        holder = self._pending.get(req.tid)
        if holder is not None:
            holder.doc = {"tid": req.tid, "spec": None, "misc": doc["misc"], "result": {"loss": LIAR_LOSS}}
        vals = plain_vals(doc["misc"]["vals"])
        return Proposal(req.tid, doc, vals, self._values(vals))

    def _given(self, tid: int, point: Mapping[str, Any]) -> list[Any]:
        """A document for values chosen outside the algorithm, as hyperopt's own would be."""
        misc = {"tid": tid, "cmd": self._domain.cmd, "workdir": self._domain.workdir}
        misc["idxs"] = {name: [tid] for name in point}
        misc["vals"] = {name: [value] for name, value in point.items()}
        return list(self.trials.new_trial_docs([tid], [None], [self._domain.new_result()], [misc]))

    def book(self, proposal: Proposal) -> None:
        """Add a computed suggestion to `Trials` as a running trial (the search's thread)."""
        assert proposal.doc is not None
        doc = proposal.doc
        doc["state"] = base.JOB_STATE_RUNNING
        doc["book_time"] = coarse_utcnow()
        self.trials.insert_trial_docs([doc])
        stored = self.trials._dynamic_trials[-1]  # the inserted (SON-ified) copy
        self._docs[stored["tid"]] = stored
        self.trials._trials.append(stored)  # what refresh() would add: ids grow with booking order

    def release(self, tids: Sequence[int]) -> None:
        """Give back suggestions that were never booked: no document, their ids free again."""
        for tid in tids:
            if self._pending.pop(tid, None) is not None and tid not in self._docs:
                self.trials._ids.discard(tid)
                self._booked -= 1

    def suggest(self) -> tuple[int, dict[str, list[Any]]] | None:
        """Book the algorithm's next trial at once: its id and values, or None when the space is exhausted."""
        proposal = self.compute(self.request())
        if proposal.doc is None:
            self.release([proposal.tid])
            return None
        self.book(proposal)
        return proposal.tid, proposal.vals

    def store(self, record: TrialRecord, metric: str, mode: Mode | str) -> None:
        """Write a finished trial into its booked document, so the algorithm learns it."""
        doc = self._docs[record.tid]
        doc["state"] = _STATES[record.status]
        doc["refresh_time"] = coarse_utcnow()
        doc["result"] = result_doc(record, metric, mode)
        if doc["result"]["status"] == base.STATUS_FAIL:
            doc["misc"]["error"] = (record.status, record.error or "")
        self._pending.pop(record.tid, None)
        if doc["state"] in _VISIBLE:
            self._learn(doc)
        else:  # as refresh() would: failed and cancelled trials leave `Trials.trials`
            shown = self.trials._trials
            at = bisect.bisect_left(shown, record.tid, key=lambda d: d["tid"])
            if at < len(shown) and shown[at] is doc:
                del shown[at]

    def _learn(self, doc: dict[str, Any]) -> None:
        if doc["state"] != base.JOB_STATE_DONE:
            return
        loss = doc["result"].get("loss")
        self._done += 1
        self._window.add(doc, math.inf if loss is None else float(loss))
        self._active.update(k for k, v in doc["misc"]["vals"].items() if len(v))


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


def queue_given(trials: Trials, point: Mapping[str, Any]) -> None:
    """Queue a trial of given values (hyperopt's units) before `fmin`, which runs queued trials first.

    `fmin` ignores `points_to_evaluate` when it is given its trials, as SparkTrials is.
    """
    trials.insert_trial_docs([generate_trial(trials.new_trial_ids(1)[0], dict(point))])
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
