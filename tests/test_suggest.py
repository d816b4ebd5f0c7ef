"""Suggestions computed ahead (issue 19): no phantom trial on a stop, pending-aware, bounded TPE, reproducible."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from hyperopt import base, tpe

from nbtune._errors import SearchFailed
from nbtune._events import Listener
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import SearchSpace, search_space
from nbtune.search._build import build_objective
from nbtune.search._history import TPE_WINDOW, UNBOUNDED, History, Window, tpe_startup
from nbtune.search._local import LocalExecutor
from nbtune.search._loop import Search
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest

CELL = "import time\nx = 0.5  # tune: uniform(0, 1)\ny = 1.0  # tune: uniform(0, 2)\nloss = (x - 0.3) ** 2 + y\n"


def space_of(cell: str = CELL) -> SearchSpace:
    return search_space(parse_cell(cell).params, None, {})


def options(**given: Any) -> TuneOptions:
    return TuneOptions().replace(**{"mlflow": False, "backend": "local", "seed": 0, "quiet": True, **given})


class Seen(Listener):
    """Every trial the listeners were told of, started and finished; `stop` may end the search after a trial."""

    def __init__(self, stop: Callable[[Search, int], None] | None = None) -> None:
        self.started: list[int] = []
        self.finished: list[int] = []
        self.search: Search | None = None
        self.stop = stop

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.started.append(number)

    def trial_finished(self, record: TrialRecord) -> None:
        self.finished.append(record.number)
        if self.stop is not None and self.search is not None:
            self.stop(self.search, len(self.finished))


def local_search(cell: str, seen: Seen | None = None, **given: Any) -> Search:
    opts = options(**given)
    space = space_of(cell)
    objective = build_objective(parse_cell(cell), {}, opts, space.names)
    search = Search(objective, space, opts, LocalExecutor(objective), [seen] if seen else [])
    if seen is not None:
        seen.search = search
    return search


def assert_no_phantom(result: TuneResult, seen: Seen) -> None:
    """Trials are exactly the submitted ones, numbered densely, and hyperopt's documents agree."""
    numbers = [r.number for r in result.records]
    assert sorted(numbers) == list(range(len(numbers))) == sorted(seen.started) == sorted(seen.finished)
    trials = result.trials
    docs = trials._dynamic_trials
    assert sorted(d["tid"] for d in docs) == sorted(r.tid for r in result.records)
    assert trials._ids == {r.tid for r in result.records}  # no id reserved by an unsubmitted suggestion
    assert all(d["state"] in (base.JOB_STATE_DONE, base.JOB_STATE_ERROR, base.JOB_STATE_CANCEL) for d in docs)
    kept = list(trials.trials)
    trials.refresh()  # the incremental bookkeeping left what hyperopt's own refresh() would
    assert [d["tid"] for d in kept] == [d["tid"] for d in trials.trials]


def test_cancel_leaves_no_suggestion_in_the_result() -> None:
    seen = Seen(stop=lambda search, n: search.info.cancel() if n == 5 else None)
    result = local_search(CELL, seen, max_evals=50, algo="tpe").run()
    assert result.stop_reason == "cancelled" and len(result.records) == 5
    assert [r.status for r in result.records] == ["ok"] * 5  # every finished trial kept
    assert_no_phantom(result, seen)


def test_timeout_leaves_no_suggestion_in_the_result() -> None:
    seen = Seen()
    cell = CELL + "time.sleep(0.04)\n"
    result = local_search(cell, seen, max_evals=1000, timeout=0.5, algo="random").run()
    assert result.stop_reason == "timeout" and 2 <= len(result.records) < 1000
    assert result.counts()["ok"] >= 1
    assert_no_phantom(result, seen)


def test_max_failures_leaves_no_suggestion_in_the_result() -> None:
    seen = Seen()
    cell = CELL + "if x > 0.4:\n    raise ValueError('too big')\n"
    result = local_search(cell, seen, max_evals=100, max_failures=3, algo="tpe").run()
    assert result.stop_reason == "max-failures" and result.counts()["failed"] == 3
    assert_no_phantom(result, seen)


class Slots:
    """An in-process executor with several slots whose trials end in a scrambled order, after `nap` seconds."""

    name = "slots"

    def __init__(self, slots: int, nap: float = 0.0, fail: Callable[[TrialRequest], bool] = lambda r: False) -> None:
        self.slots, self.nap, self.fail = slots, nap, fail
        self.running: list[TrialRequest] = []
        self.submitted: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        self.running.append(request)
        self.submitted.append(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        time.sleep(self.nap)
        if not self.running:
            return []
        request = self.running.pop(len(self.running) // 2)  # neither first nor last in
        if self.fail(request):
            return [TrialOutcome(tid=request.tid, status="failed", error="boom")]
        return [TrialOutcome(tid=request.tid, status="ok", value=request.params["x"] + request.params["y"])]

    def cancel(self) -> None:
        self.running.clear()

    def close(self) -> None:
        pass


def slots_search(executor: Slots, seen: Seen, **given: Any) -> Search:
    opts = options(**given)
    space = space_of()
    search = Search(build_objective(parse_cell(CELL), {}, opts, space.names), space, opts, executor, [seen])
    seen.search = search
    return search


@pytest.mark.parametrize("stop", ["cancel", "max-failures", "timeout"])
def test_stops_with_several_slots_and_a_full_queue_leave_no_phantom(stop: str) -> None:
    seen = Seen(stop=lambda search, n: search.info.cancel() if stop == "cancel" and n == 12 else None)
    executor = Slots(4, nap=0.01 if stop == "timeout" else 0.0, fail=lambda r: stop == "max-failures" and r.tid >= 9)
    given: dict[str, Any] = {"max_failures": 2} if stop == "max-failures" else {}
    search = slots_search(
        executor, seen, max_evals=500, algo="tpe", timeout=0.6 if stop == "timeout" else None, **given
    )
    result = search.run()
    assert result.stop_reason == {"cancel": "cancelled", "max-failures": "max-failures", "timeout": "timeout"}[stop]
    assert len(executor.submitted) == len(result.records) < 500
    assert_no_phantom(result, seen)


def test_a_completed_search_runs_exactly_max_evals() -> None:
    seen = Seen()
    executor = Slots(3)
    result = slots_search(executor, seen, max_evals=40, algo="tpe").run()
    assert result.stop_reason == "completed" and len(result.records) == len(executor.submitted) == 40
    assert_no_phantom(result, seen)


def finished_history(algo: str, n: int, window: Window | None = None, seed: int = 0) -> tuple[History, SearchSpace]:
    """A history of n trials run one after another (suggest, evaluate, learn)."""
    space = space_of()
    history = History(TuneResult("loss", "min", space.names).trials, space, algo, seed, window)  # type: ignore[arg-type]
    for number in range(n):
        suggested = history.suggest()
        assert suggested is not None
        tid, vals = suggested
        params = space.values(vals)
        value = (params["x"] - 0.3) ** 2 + params["y"]
        record = TrialRecord(number=number, tid=tid, params=params, vals=vals, status="ok", value=value)
        history.store(record, "loss", "min")
    return history, space


class SameSeed:
    def integers(self, high: int) -> int:
        return 12345


def test_pending_suggestions_differ_where_the_same_seed_alone_would_repeat() -> None:
    history, _ = finished_history("tpe", 30)
    history._rng = SameSeed()  # type: ignore[assignment]  # only the pending trials can tell them apart
    alone = []
    for _ in range(3):  # each given back before the next: the same request, the same point
        request = history.request()
        alone.append(history.compute(request).params)
        history.release([request.tid])
    assert alone[0] == alone[1] == alone[2]
    pending = [history.compute(history.request()).params for _ in range(4)]  # each while the earlier ones pend
    assert pending[0] == alone[0]
    assert len({tuple(sorted(p.items())) for p in pending}) == 4


def test_pending_suggestions_enter_tpe_with_the_liars_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[float]] = []
    real = tpe.suggest

    def counting(new_ids: Any, domain: Any, trials: Any, seed: int, **kw: Any) -> Any:
        seen.append([doc["result"].get("loss", float("inf")) for doc in trials.trials])
        return real(new_ids, domain, trials, seed, **kw)

    monkeypatch.setattr(tpe, "suggest", counting)
    history, _ = finished_history("tpe", 25)
    seen.clear()
    for _ in range(3):
        history.compute(history.request())
    assert [len(losses) for losses in seen] == [25, 26, 27]
    assert [sum(loss == float("inf") for loss in losses) for losses in seen] == [0, 1, 2]


def test_the_window_keeps_the_documents_tpe_reads_flat(monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[int] = []
    real = tpe.suggest

    def counting(new_ids: Any, domain: Any, trials: Any, seed: int, **kw: Any) -> Any:
        read.append(len(trials.trials))
        return real(new_ids, domain, trials, seed, **kw)

    monkeypatch.setattr(tpe, "suggest", counting)
    history, _ = finished_history("tpe", 90, Window(best=8, recent=16))
    assert read[:17] == list(range(17))  # the whole history while it fits in the recent 16
    assert all(16 <= n <= 24 for n in read[17:]) and len(read) == 90  # then flat: recent 16 plus best 8 (may overlap)
    assert len(history.trials.trials) == 90  # Trials itself keeps every trial
    best = min(history.trials.trials, key=lambda d: d["result"]["loss"])
    window = history.request()
    assert best["tid"] in {d["tid"] for d in window.finished}  # the best is never forgotten


def test_tpe_and_anneal_default_to_their_windows() -> None:
    space = space_of()
    assert History(TuneResult("loss", "min", space.names).trials, space, "tpe", 0)._window.best == TPE_WINDOW.best
    assert TPE_WINDOW.best is not None and TPE_WINDOW.best + TPE_WINDOW.recent <= 1000
    assert History(TuneResult("loss", "min", space.names).trials, space, "anneal", 0)._window.best == 64


def test_anneal_on_its_window_suggests_what_it_would_on_the_whole_history() -> None:
    windowed, _ = finished_history("anneal", 150)  # beyond the 64 best it keeps
    whole, _ = finished_history("anneal", 150, UNBOUNDED)
    assert [d["misc"]["vals"] for d in windowed.trials.trials] == [d["misc"]["vals"] for d in whole.trials.trials]
    assert len(windowed.request().finished) == 64


def seeded_params(seed: int, nap: float) -> list[dict[str, Any]]:
    cell = CELL + f"time.sleep({nap})\n"
    result = local_search(cell, max_evals=28, algo="tpe", seed=seed).run()  # past TPE's 20 random start-up trials
    return [r.params for r in sorted(result.records, key=lambda r: r.number)]


def test_a_seeded_serial_search_is_reproducible_whatever_the_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    first = seeded_params(3, nap=0.0)
    real = History.compute

    def slow(self: History, request: Any) -> Any:  # the suggestion thread now lags well behind the trials
        time.sleep(0.01)
        return real(self, request)

    monkeypatch.setattr(History, "compute", slow)
    assert seeded_params(3, nap=0.0) == first
    monkeypatch.undo()
    assert seeded_params(3, nap=0.005) == first
    assert seeded_params(4, nap=0.0) != first


def test_a_grid_runs_each_point_once_even_when_one_fails() -> None:
    cell = "x = 1  # tune: choice([1, 2, 3, 4])\nif x == 1:\n    raise ValueError('no')\nloss = x\n"
    result = local_search(cell, algo="grid").run()
    assert sorted(r.params["x"] for r in result.records) == [1, 2, 3, 4]


def test_a_suggestion_error_reaches_the_search_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: History, request: Any) -> Any:
        if threading.current_thread() is threading.main_thread():
            raise AssertionError("computed on the search's thread")
        raise RuntimeError("the algorithm broke")

    monkeypatch.setattr(History, "compute", broken)
    with pytest.raises((RuntimeError, SearchFailed), match="the algorithm broke"):
        local_search(CELL, max_evals=5).run()


def test_tpe_on_a_window_picks_the_good_group_of_the_whole_history() -> None:
    from math import ceil, sqrt

    from nbtune.search._history import _tpe_gamma

    for shown in (30, 250):
        for visible in range(1, 12_000):
            whole = min(ceil(0.25 * sqrt(visible)), 25)  # hyperopt's ap_split_trials on every document
            assert min(ceil(_tpe_gamma(visible, min(shown, visible)) * sqrt(min(shown, visible))), 25) == whole


def test_tpe_leaves_its_random_start_up_within_a_small_budget() -> None:
    # hyperopt's fixed 20 start-up trials made a 16-trial TPE search the very random search of the same seed.
    assert [tpe_startup(n) for n in (None, 6, 16, 32, 60, 1000)] == [20, 5, 5, 10, 20, 20]
    bests: dict[str, list[float]] = {"tpe": [], "random": []}
    for seed in range(5):
        for algo, values in bests.items():
            result = local_search(CELL, max_evals=16, algo=algo, seed=seed).run()
            values.append(min(r.value for r in result.records if r.value is not None))
    assert sorted(bests["tpe"])[2] < sorted(bests["random"])[2], bests
