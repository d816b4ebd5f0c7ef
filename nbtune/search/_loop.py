"""The search loop: hyperopt suggests on the driver, an executor runs trials, listeners watch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from hyperopt import anneal, base, rand, tpe
from hyperopt.utils import coarse_utcnow

from nbtune._errors import SearchFailed
from nbtune._events import Listener, Listeners, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.search._executor import Executor, ExecutorError
from nbtune.trial._objective import Objective
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest

ALGORITHMS: dict[str, Callable[..., Any]] = {"tpe": tpe.suggest, "random": rand.suggest, "anneal": anneal.suggest}
_POLL = 0.1  # seconds between checks of timeouts, cancel requests and UI events
# Stops after which the trials still running are abandoned rather than awaited.
_ABANDON = {"timeout", "cancelled", "interrupted", "error", "max-failures", "failing"}
_STATES = {"ok": base.JOB_STATE_DONE, "failed": base.JOB_STATE_ERROR, "cancelled": base.JOB_STATE_CANCEL}


@dataclass
class _Running:
    number: int
    params: dict[str, Any]
    attempts: int = 1


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
    ) -> None:
        self.objective = objective
        self.space = space
        self.options = options
        self.executor = executor
        self.listeners = Listeners(listeners or [])
        self.info = info or SearchInfo(
            name=options.run_name or f"{options.out}: {options.metric}",
            options=options,
            backend=executor.name,
            parallelism=executor.slots,
            param_names=space.names,
            source=objective.source,
        )
        self.result = result or TuneResult(options.metric, options.mode, space.names, options.log_metrics)
        self.result.backend, self.result.parallelism = executor.name, executor.slots
        self.result.max_evals = options.max_evals
        self._running: dict[int, _Running] = {}
        self._fatal: TrialOutcome | None = None
        self._executor_error: str | None = None

    def run(self) -> TuneResult:
        """Run to completion or until a stop condition; return the result, never losing a finished trial."""
        opts, result = self.options, self.result
        domain = base.Domain(_not_called, self.space.hyperopt_space())
        algo = ALGORITHMS[opts.algo]
        rng = np.random.default_rng(opts.seed)
        start = time.monotonic()
        deadline = start + opts.timeout if opts.timeout else None
        submitted = len(result.records)  # resumed trials count towards --max-evals
        reason: str | None = None
        self.listeners.search_started(self.info, result)
        self.info.cancel_hooks.append(self.executor.cancel)  # a Cancel click stops running trials at once
        try:
            while True:
                while reason is None and len(self._running) < self.executor.slots and submitted < opts.max_evals:
                    if not self._suggest(domain, algo, rng, deadline):
                        reason = "exhausted"
                        break
                    submitted += 1
                if not self._running:
                    break
                wait = _POLL if deadline is None else max(0.0, min(_POLL, deadline - time.monotonic()))
                for outcome in self.executor.poll(wait):
                    self._finish(outcome, deadline)
                self.listeners.poll()
                reason = reason or self._stop_reason(deadline)
                if reason in _ABANDON:
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
            reason, self._executor_error = "error", str(exc)
            self.executor.cancel()
            self._cancel_running(f"stopped: {exc}")
        finally:
            self.info.cancel_hooks.remove(self.executor.cancel)
            self.executor.close()
            result.wall_time += time.monotonic() - start
            result.stop_reason = reason if reason not in (None, "exhausted") else "completed"
        self.listeners.search_finished(result)
        self._raise_if_failed()
        return result

    def _suggest(
        self, domain: base.Domain, algo: Callable[..., Any], rng: np.random.Generator, deadline: float | None
    ) -> bool:
        trials = self.result.trials
        tids = trials.new_trial_ids(1)
        trials.refresh()
        docs = algo(tids, domain, trials, int(rng.integers(2**31 - 1)))
        if not docs:
            return False
        doc = docs[0]
        doc["state"] = base.JOB_STATE_RUNNING
        doc["book_time"] = coarse_utcnow()
        trials.insert_trial_docs([doc])
        trials.refresh()
        params = self.space.values(doc["misc"]["vals"])
        number = len(self.result.records) + len(self._running)
        self._running[doc["tid"]] = _Running(number, params)
        self.executor.submit(TrialRequest(doc["tid"], params, self._trial_timeout(deadline)))
        self.listeners.trial_started(number, params)
        return True

    def _trial_timeout(self, deadline: float | None) -> float | None:
        limits = [t for t in (self.options.trial_timeout, deadline and deadline - time.monotonic()) if t]
        return max(0.01, min(limits)) if limits else None

    def _finish(self, outcome: TrialOutcome, deadline: float | None) -> None:
        running = self._running.pop(outcome.tid, None)
        if running is None:
            return  # a late duplicate (e.g. a retried trial's first attempt): already recorded
        if outcome.lost and running.attempts < 2:
            running.attempts += 1
            self._running[outcome.tid] = running
            self.executor.submit(
                TrialRequest(outcome.tid, running.params, self._trial_timeout(deadline), running.attempts)
            )
            return
        if outcome.timed_out and deadline is not None and time.monotonic() >= deadline - 0.05:
            outcome.status, outcome.error = "cancelled", "stopped by --timeout"
        if outcome.fatal and self._fatal is None:
            self._fatal = outcome
        record = TrialRecord.from_outcome(running.number, running.params, outcome, running.attempts)
        self._store(record)
        self.listeners.trial_finished(record)

    def _store(self, record: TrialRecord) -> None:
        """Write a finished trial into hyperopt's Trials (so the algorithm learns) and the result."""
        trials = self.result.trials
        doc = next(d for d in trials._dynamic_trials if d["tid"] == record.tid)
        doc["state"] = _STATES[record.status]
        doc["refresh_time"] = coarse_utcnow()
        if record.status == "ok" and record.value is not None:
            doc["result"] = {
                "status": base.STATUS_OK,
                "loss": self.objective.loss(record.value),
                self.options.metric: record.value,
                "duration": record.duration,
                **{f"log_{k}": v for k, v in record.log_metrics.items()},
            }
        else:
            doc["result"] = {"status": base.STATUS_FAIL, "error": record.error or "", "duration": record.duration}
            doc["misc"]["error"] = (record.status, record.error or "")
        trials.refresh()
        self.result.records.append(record)

    def _cancel_running(self, why: str) -> None:
        for tid, running in sorted(self._running.items(), key=lambda kv: kv[1].number):
            outcome = TrialOutcome(tid=tid, status="cancelled", error=why)
            self._store(TrialRecord.from_outcome(running.number, running.params, outcome, running.attempts))
            self.listeners.trial_finished(self.result.records[-1])
        self._running.clear()

    def _stop_reason(self, deadline: float | None) -> str | None:
        records, opts = self.result.records, self.options
        failed = sum(r.status == "failed" for r in records)
        if self.info.cancel_event.is_set():
            return "cancelled"
        if deadline is not None and time.monotonic() >= deadline:
            return "timeout"
        if self._fatal is not None:
            return "error"
        if opts.max_failures is not None and failed >= opts.max_failures:
            return "max-failures"
        # A cell that fails every time is broken, not unlucky: stop early and say why.
        if opts.max_failures is None and failed and failed == len(records) >= max(3, self.executor.slots):
            return "failing"
        if opts.early_stop is not None and self._since_best() >= opts.early_stop:
            return "early-stop"
        return None

    def _since_best(self) -> int:
        """Finished ok trials since the best one."""
        best = self.result.best_trial
        if best is None:
            return 0
        ok = [r for r in self.result.records if r.status == "ok"]
        return len(ok) - 1 - ok.index(best)

    def _raise_if_failed(self) -> None:
        result = self.result
        if self._executor_error is not None:
            raise SearchFailed(self._executor_error, result)
        if self._fatal is not None:
            raise SearchFailed(self._fatal.fatal or "the cell is wrong", result)
        failed = [r for r in result.records if r.status == "failed"]
        if failed and not any(r.status == "ok" for r in result.records):
            first = min(failed, key=lambda r: r.number)
            raise SearchFailed(f"every trial failed; the first with: {first.error}", result)


def _not_called(params: Any) -> float:  # pragma: no cover - hyperopt needs a function
    raise RuntimeError("nbtune evaluates trials through its executors")
