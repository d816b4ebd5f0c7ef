"""The search loop against a scripted fake executor: retries, duplicates, stop reasons, resume, history."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from hyperopt import base

from nbtune._errors import SearchFailed
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import search_space
from nbtune.search._build import build_objective
from nbtune.search._executor import ExecutorError
from nbtune.search._history import restore
from nbtune.search._loop import Search
from nbtune.trial._records import TrialOutcome, TrialRequest

CELL = "x = 0.5  # tune: uniform(0, 1)\nloss = (x - 0.3) ** 2\nscore = x\n"
Decide = Callable[[TrialRequest, int], "TrialOutcome | None"]


class FakeExecutor:
    """Runs no code: `decide(request, n)` scripts each trial (n = 0-based submit count; None = still running)."""

    name = "fake"

    def __init__(self, decide: Decide, slots: int = 1, on_poll: Callable[[int], None] | None = None) -> None:
        self.decide, self.slots, self.on_poll = decide, slots, on_poll
        self.submitted: list[TrialRequest] = []
        self.running: list[tuple[int, TrialRequest]] = []
        self.later: list[TrialOutcome] = []  # handed back by the next poll (late duplicates)
        self.polls = self.cancels = self.closes = 0

    def submit(self, request: TrialRequest) -> None:
        self.running.append((len(self.submitted), request))
        self.submitted.append(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        self.polls += 1
        assert self.polls < 500, "the search never stopped"
        if self.on_poll:
            self.on_poll(self.polls)
        done, self.later, still = self.later, [], []
        for n, request in self.running:
            outcome = self.decide(request, n)
            if outcome is None:
                still.append((n, request))
            else:
                done.append(outcome)
        self.running = still
        if not done:
            time.sleep(min(timeout, 0.005))
        return done

    def cancel(self) -> None:
        self.cancels += 1
        self.running.clear()

    def close(self) -> None:
        self.closes += 1


def ok(r: TrialRequest, n: int = 0) -> TrialOutcome:
    return TrialOutcome(tid=r.tid, status="ok", value=(r.params["x"] - 0.3) ** 2)


def failed(r: TrialRequest, n: int = 0) -> TrialOutcome:
    return TrialOutcome(tid=r.tid, status="failed", error=f"boom {n}")


def lost(r: TrialRequest) -> TrialOutcome:
    return TrialOutcome(tid=r.tid, status="failed", lost=True, error="worker lost")


def hang(r: TrialRequest, n: int) -> None:
    return None


def make_search(executor: FakeExecutor, result: TuneResult | None = None, **options: object) -> Search:
    opts = TuneOptions().replace(**{"mlflow": False, "backend": "local", "seed": 0, "quiet": True, **options})
    spec = parse_cell(CELL)
    space = search_space(spec.params, None, {})
    return Search(build_objective(spec, {}, opts, space.names), space, opts, executor, result=result)


def run(executor: FakeExecutor, **options: Any) -> TuneResult:
    return make_search(executor, **options).run()


def statuses(result: TuneResult) -> list[str]:
    return [r.status for r in result.records]


def test_completed_after_max_evals() -> None:
    ex = FakeExecutor(ok, slots=2)
    result = run(ex, max_evals=5)
    assert result.stop_reason == "completed"
    assert statuses(result) == ["ok"] * 5 and len(ex.submitted) == 5
    assert [r.number for r in result.records] == list(range(5))
    assert (ex.cancels, ex.closes) == (0, 1)


def test_lost_trial_is_retried_once() -> None:
    ex = FakeExecutor(lambda r, n: lost(r) if n == 0 else ok(r))
    result = run(ex, max_evals=2)
    first, retry = ex.submitted[:2]
    assert (retry.tid, retry.params, retry.attempt) == (first.tid, first.params, 2)
    assert statuses(result) == ["ok", "ok"] and [r.attempts for r in result.records] == [2, 1]


def test_second_loss_is_recorded_failed() -> None:
    ex = FakeExecutor(lambda r, n: lost(r) if n <= 1 else ok(r))  # n 0 and 1: the first trial, twice
    result = run(ex, max_evals=2)
    assert [r.attempt for r in ex.submitted] == [1, 2, 1]
    assert statuses(result) == ["failed", "ok"]
    assert result.records[0].attempts == 2 and result.records[0].error == "worker lost"


def test_late_duplicate_outcome_is_ignored() -> None:
    def decide(r: TrialRequest, n: int) -> TrialOutcome:
        ex.later.append(TrialOutcome(tid=r.tid, status="ok", value=99.0))
        return ok(r)

    ex = FakeExecutor(decide)
    result = run(ex, max_evals=3)
    assert statuses(result) == ["ok"] * 3
    assert sorted(r.tid for r in result.records) == sorted(r.tid for r in ex.submitted)
    assert 99.0 not in [r.value for r in result.records] and len(result.trials.trials) == 3


def test_timeout_cancels_running_trials() -> None:
    ex = FakeExecutor(hang, slots=2)
    started = time.monotonic()
    result = run(ex, max_evals=10, timeout=0.2)
    assert time.monotonic() - started < 2
    assert result.stop_reason == "timeout"
    assert statuses(result) == ["cancelled", "cancelled"] and len(ex.submitted) == 2
    assert {r.error for r in result.records} == {"stopped: timeout"}
    assert all(r.timeout is not None and r.timeout <= 0.2 for r in ex.submitted)
    assert ex.cancels >= 1 and ex.closes == 1


def test_cancel_click_stops_the_search() -> None:
    ex = FakeExecutor(lambda r, n: ok(r) if n == 0 else None, slots=2)
    search = make_search(ex, max_evals=10)
    ex.on_poll = lambda polls: search.info.cancel() if polls == 2 else None
    result = search.run()
    assert result.stop_reason == "cancelled"
    assert statuses(result) == ["ok", "cancelled", "cancelled"]
    assert {r.error for r in result.records[1:]} == {"stopped: cancelled"}
    assert ex.cancels >= 1 and ex.closes == 1 and search.info.cancel_hooks == []


def raise_on_poll(exc: BaseException, at: int) -> Callable[[int], None]:
    def on_poll(polls: int) -> None:
        if polls == at:
            raise exc

    return on_poll


def test_keyboard_interrupt_keeps_finished_trials() -> None:
    ex = FakeExecutor(ok, on_poll=raise_on_poll(KeyboardInterrupt(), at=2))
    search = make_search(ex, max_evals=10)
    try:
        result = search.run()
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped the search")
    assert result.stop_reason == "interrupted"
    assert statuses(result) == ["ok", "cancelled"] and result.records[1].error == "stopped: interrupted"
    assert (ex.cancels, ex.closes) == (1, 1) and search.info.cancel_hooks == []


def test_executor_error_fails_the_search() -> None:
    ex = FakeExecutor(ok, on_poll=raise_on_poll(ExecutorError("no worker started"), at=2))
    with pytest.raises(SearchFailed, match="no worker started") as failure:
        run(ex, max_evals=10)
    result = failure.value.result
    assert result.stop_reason == "error" and statuses(result) == ["ok", "cancelled"]
    assert (ex.cancels, ex.closes) == (1, 1)


def test_fatal_outcome_fails_the_search() -> None:
    fatal = "line 2: NameError: name 'y' is not defined"
    ex = FakeExecutor(lambda r, n: TrialOutcome(tid=r.tid, status="failed", error=fatal, fatal=fatal), slots=2)
    with pytest.raises(SearchFailed) as failure:
        run(ex, max_evals=10)
    assert failure.value.reason == fatal
    assert failure.value.result.stop_reason == "error" and len(ex.submitted) == 2


def test_max_failures() -> None:
    ex = FakeExecutor(lambda r, n: ok(r) if n == 0 else failed(r, n))
    result = run(ex, max_evals=10, max_failures=2)
    assert result.stop_reason == "max-failures" and statuses(result) == ["ok", "failed", "failed"]


def test_every_trial_failing_stops_early() -> None:
    ex = FakeExecutor(failed)
    with pytest.raises(SearchFailed, match="every trial failed; the first with: boom 0") as failure:
        run(ex, max_evals=10)
    assert failure.value.result.stop_reason == "failing" and statuses(failure.value.result) == ["failed"] * 3


def test_early_stop() -> None:
    ex = FakeExecutor(lambda r, n: TrialOutcome(tid=r.tid, status="ok", value=float(n)))  # the first is best
    result = run(ex, max_evals=10, early_stop=2)
    assert result.stop_reason == "early-stop" and len(result.records) == 3 and len(ex.submitted) == 3


def test_cancel_still_stops_a_search_that_waits_after_early_stop() -> None:
    # early-stop waits for running trials; a Cancel click (whose executor drops them) must still end it.
    ex = FakeExecutor(lambda r, n: None if n == 1 else TrialOutcome(tid=r.tid, status="ok", value=float(n)), slots=2)
    search = make_search(ex, max_evals=10, early_stop=2)
    ex.on_poll = lambda polls: search.info.cancel() if len(search.result.records) >= 3 else None
    result = search.run()
    assert result.stop_reason == "cancelled"
    assert statuses(result).count("cancelled") == 1 and ex.cancels >= 1


def test_resumed_trials_count_towards_max_evals() -> None:
    first = run(FakeExecutor(ok), max_evals=3)
    resumed = TuneResult("loss", "min", ["x"])  # as tracking/_resume.py rebuilds it from MLflow
    resumed.records = [dataclasses.replace(r, tid=-1) for r in first.records]
    restore(resumed.trials, resumed.records, "loss", "min", [(None, None)] * 3)
    ex = FakeExecutor(ok)
    result = make_search(ex, result=resumed, max_evals=5).run()
    assert len(ex.submitted) == 2 and result.stop_reason == "completed"
    assert [r.number for r in result.records] == list(range(5))
    assert result.records[:3] == resumed.records[:3] and len({r.tid for r in result.records}) == 5
    assert len(result.trials.trials) == 5


def test_history_holds_every_trial_with_max_loss_sign() -> None:
    ex = FakeExecutor(
        lambda r, n: failed(r, n) if n == 1 else TrialOutcome(tid=r.tid, status="ok", value=r.params["x"])
    )
    result = run(ex, max_evals=4, metric="score", mode="max")
    docs = {d["tid"]: d for d in result.trials._dynamic_trials}  # every document, failed ones too
    assert sorted(docs) == sorted(r.tid for r in result.records)
    ok_records = [r for r in result.records if r.status == "ok"]
    assert sorted(result.trials.tids) == sorted(r.tid for r in ok_records)  # what the algorithm learns from
    for record in ok_records:
        assert docs[record.tid]["state"] == base.JOB_STATE_DONE
        assert record.value is not None and docs[record.tid]["result"]["loss"] == -record.value
    failed_doc = docs[result.records[1].tid]
    assert failed_doc["state"] == base.JOB_STATE_ERROR and failed_doc["result"]["status"] == base.STATUS_FAIL
    assert result.best_trial is not None and result.trials.best_trial["tid"] == result.best_trial.tid
