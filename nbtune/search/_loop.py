"""The search loop: hyperopt suggests on the driver, an executor runs trials, listeners watch."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from nbtune._events import Listener, Listeners, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.search._executor import Executor, ExecutorError
from nbtune.search._history import History
from nbtune.search._policy import ABANDON, StopPolicy, StopReason
from nbtune.search._reports import ReportHub
from nbtune.search._suggest import Suggester, ahead_for
from nbtune.trial._objective import Objective
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest

_POLL = 0.1  # seconds between checks of timeouts, cancel requests and UI events


@dataclass
class _Running:
    number: int
    params: dict[str, Any]
    vals: dict[str, list[Any]]
    attempts: int = 1


def search_info(options: TuneOptions, space: SearchSpace, objective: Objective, backend: str, slots: int) -> SearchInfo:
    """What listeners learn about a search before its first trial."""
    return SearchInfo(
        name=options.run_name or f"{options.out}: {options.metric}",
        options=options,
        backend=backend,
        parallelism=slots,
        param_names=space.names,
        source=objective.source,
    )


def grid_evals(options: TuneOptions, space: SearchSpace) -> TuneOptions:
    """`--algo grid` runs the whole grid unless --max-evals says otherwise (checks the space is a grid)."""
    if options.algo != "grid":
        return options
    size = len(space.grid())
    default = TuneOptions.__dataclass_fields__["max_evals"].default
    return options.replace(max_evals=size) if options.max_evals == default else options


class Search:
    """One hyperopt search over an executor, reported to listeners as it goes."""

    def __init__(
        self,
        objective: Objective,
        space: SearchSpace,
        options: TuneOptions,
        executor: Executor,
        listeners: list[Listener] | None = None,
        info: SearchInfo | None = None,
        result: TuneResult | None = None,
        reports: ReportHub | None = None,
    ) -> None:
        self.objective = objective
        self.space = space
        self.options = options = grid_evals(options, space)
        self.executor = executor
        self.listeners = Listeners(listeners or [])
        self.info = info or search_info(options, space, objective, executor.name, executor.slots)
        self.result = result or TuneResult(options.metric, options.mode, space.names, options.log_metrics)
        self.result.backend, self.result.parallelism = executor.name, executor.slots
        self.result.max_evals = options.max_evals
        self._running: dict[int, _Running] = {}
        first = space.cell_point() if options.start_from_cell else None
        self._history = History(
            self.result.trials, space, options.algo, options.seed, max_evals=options.max_evals, first=first
        )
        # The executor's trials report here (ReportHub.report); a local trial reports on this very thread.
        self.reports = reports or ReportHub(options)
        self.reports.on_own_thread = self._live

    def numbers(self) -> dict[int, int]:
        """Trial numbers (as the dashboard shows them) of the finished and running trials, by tid."""
        numbers = {record.tid: record.number for record in self.result.records}
        numbers.update((tid, running.number) for tid, running in self._running.items())
        return numbers

    def run(self) -> TuneResult:
        """Run to completion or until a stop condition; return the result, never losing a finished trial."""
        opts, result = self.options, self.result
        start = time.monotonic()
        deadline = start + opts.timeout if opts.timeout else None
        policy = self._policy = StopPolicy(opts, result, self.executor.slots, self.info.cancel_event, deadline)
        submitted = len(result.records)  # resumed trials count towards --max-evals
        reason: StopReason | None = None
        ahead = ahead_for(self.executor.slots)
        self.listeners.search_started(self.info, result)
        self.info.cancel_hooks.append(self.executor.cancel)  # a Cancel click stops running trials at once
        self._suggester = suggester = Suggester(self._history)
        try:
            while True:
                while reason is None and len(self._running) < self.executor.slots and submitted < opts.max_evals:
                    if not self._suggest(deadline):
                        reason = "exhausted"
                        break
                    submitted += 1
                # Suggestions for the next free slots, computed while these trials run.
                while (
                    reason is None
                    and suggester.outstanding < ahead
                    and submitted + suggester.outstanding < opts.max_evals
                ):
                    suggester.request()
                if not self._running:
                    break
                wait = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
                for outcome in self.executor.poll(wait):
                    self._finish(outcome, deadline)
                self._tell_reports()
                self.listeners.poll()
                latest = policy.reason()
                if reason is None or latest in ABANDON:  # a Cancel or --timeout still ends an early-stopped wait
                    reason = latest or reason
                if reason in ABANDON:
                    self.executor.cancel()
                    for outcome in self.executor.poll(0):  # whatever finished meanwhile is kept
                        self._finish(outcome, deadline)
                    self._cancel_running(f"stopped: {reason}")
                    break
        except KeyboardInterrupt:
            reason = "interrupted"
            self.executor.cancel()
            self._cancel_running("stopped: interrupted")
        except ExecutorError as exc:
            reason, policy.executor_error = "error", str(exc)
            self.executor.cancel()
            self._cancel_running(f"stopped: {exc}")
        finally:
            suggester.close()  # suggestions never submitted are given back: no phantom trial
            self.info.cancel_hooks.remove(self.executor.cancel)
            self.reports.on_own_thread = None
            self.executor.close()
            result.wall_time += time.monotonic() - start
            result.stop_reason = reason if reason not in (None, "exhausted") else "completed"
        self.reports.warn_if_unused()
        self.listeners.search_finished(result)
        policy.raise_if_failed()
        return result

    def _suggest(self, deadline: float | None) -> bool:
        proposal = self._suggester.take()
        if proposal is None:
            return False
        self._history.book(proposal)
        tid, params = proposal.tid, proposal.params
        number = len(self.result.records) + len(self._running)  # given at submit: numbers stay dense
        self._running[tid] = _Running(number, params, proposal.vals)
        self.executor.submit(TrialRequest(tid=tid, params=params, timeout=self._trial_timeout(deadline)))
        self.listeners.trial_started(number, params)
        return True

    def _trial_timeout(self, deadline: float | None) -> float | None:
        limits = [t for t in (self.options.trial_timeout, deadline and deadline - time.monotonic()) if t]
        return max(0.01, min(limits)) if limits else None

    def _live(self) -> None:
        """While a local trial runs on this thread: its reports reach the listeners at once."""
        self._tell_reports()
        self.listeners.poll()

    def _tell_reports(self) -> None:
        """Tell the listeners about the reports that arrived (a dashboard's live learning curves)."""
        for tid, step, metrics in self.reports.drain():
            running = self._running.get(tid)
            if running is not None:
                self.listeners.trial_reported(running.number, step, metrics)

    def _finish(self, outcome: TrialOutcome, deadline: float | None) -> None:
        self._tell_reports()  # its last reports before its end
        running = self._running.pop(outcome.tid, None)
        if running is None:
            return  # a late duplicate (e.g. a retried trial's first attempt): already recorded
        if outcome.lost and running.attempts < 2:
            running.attempts += 1
            self._running[outcome.tid] = running
            self.executor.submit(
                TrialRequest(
                    tid=outcome.tid,
                    params=running.params,
                    timeout=self._trial_timeout(deadline),
                    attempt=running.attempts,
                )
            )
            return
        if outcome.timed_out and deadline is not None and time.monotonic() >= deadline - 0.05:
            outcome.status, outcome.error = "cancelled", "stopped by --timeout"
        self._policy.saw(outcome)
        self._store(self._record(outcome, running))

    def _record(self, outcome: TrialOutcome, running: _Running) -> TrialRecord:
        record = TrialRecord.from_outcome(
            outcome, number=running.number, params=running.params, vals=running.vals, attempts=running.attempts
        )
        # The driver's copy of the curve: a lost worker's partial curve is kept.
        record.curve = self.reports.finish(outcome.tid, completed=outcome.status == "ok")
        if record.curve:
            record.step = max(record.step, record.curve[-1][0])
        return record

    def _store(self, record: TrialRecord) -> None:
        """Teach the algorithm a finished trial, keep it in the result and tell the listeners."""
        self._history.store(record, self.options.metric, self.options.mode)
        self.result.records.append(record)
        self.listeners.trial_finished(record)

    def _cancel_running(self, why: str) -> None:
        for tid, running in sorted(self._running.items(), key=lambda kv: kv[1].number):
            self._store(self._record(TrialOutcome(tid=tid, status="cancelled", error=why), running))
        self._running.clear()
