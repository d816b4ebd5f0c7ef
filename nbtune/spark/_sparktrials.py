"""`--backend sparktrials`: hyperopt's own SparkTrials, for comparison and compatibility."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, fmin
from hyperopt.spark import SparkTrials

from nbtune._events import Listener, SearchInfo
from nbtune._options import TuneOptions
from nbtune.cell._space import SearchSpace
from nbtune.search._loop import ALGORITHMS, Search
from nbtune.trial._objective import Objective
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest


class _NoExecutor:
    """SparkTrials dispatches its own Spark jobs; this only carries the name and slot count."""

    name = "sparktrials"

    def __init__(self, slots: int) -> None:
        self.slots = slots

    def submit(self, request: TrialRequest) -> None:
        """Unused: SparkTrials submits."""

    def poll(self, timeout: float) -> list[TrialOutcome]:
        """Unused: SparkTrials collects."""
        return []

    def cancel(self) -> None:
        """Unused."""

    def close(self) -> None:
        """Unused."""


def _trial_fn(objective: Objective, space: SearchSpace, trial_timeout: float | None) -> Any:
    """The function SparkTrials ships (pickled again for every trial) to a fresh Python worker."""

    def fn(values: dict[str, Any]) -> dict[str, Any]:
        params = space.convert(values)
        outcome = objective.run(TrialRequest(0, params, trial_timeout))
        if outcome.status == "ok" and outcome.value is not None:
            return {"status": STATUS_OK, "loss": objective.loss(outcome.value), "outcome": outcome}
        return {"status": STATUS_FAIL, "outcome": outcome}

    return fn


class SparkTrialsSearch(Search):
    """Runs hyperopt.fmin with SparkTrials on a thread and reports its trials as they finish."""

    def __init__(
        self,
        spark: Any,
        objective: Objective,
        space: SearchSpace,
        options: TuneOptions,
        listeners: list[Listener] | None = None,
        info: SearchInfo | None = None,
    ) -> None:
        self.spark = spark
        slots = options.parallelism or int(spark.sparkContext.defaultParallelism)
        super().__init__(objective, space, options, _NoExecutor(slots), listeners, info)

    def run(self) -> Any:
        """Run fmin on a thread; the notebook thread streams events and handles stops."""
        opts, result = self.options, self.result
        trials = SparkTrials(parallelism=self.executor.slots, spark_session=self.spark)
        result.trials = trials
        group = f"nbtune-sparktrials-{uuid.uuid4().hex[:8]}"
        errors: list[BaseException] = []

        def drive() -> None:
            self.spark.sparkContext.setJobGroup(group, "nbtune sparktrials", interruptOnCancel=True)
            try:
                fmin(
                    _trial_fn(self.objective, self.space, opts.trial_timeout),
                    self.space.hyperopt_space(),
                    algo=ALGORITHMS[opts.algo],
                    max_evals=opts.max_evals,
                    trials=trials,
                    timeout=opts.timeout,
                    rstate=np.random.default_rng(opts.seed),
                    show_progressbar=False,
                )
            except BaseException as exc:  # reported on the notebook thread
                errors.append(exc)

        start = time.monotonic()
        reason: str | None = None
        self.listeners.search_started(self.info, result)
        thread = threading.Thread(target=drive, name="nbtune-sparktrials", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.1)
                self._collect(trials)
                self.listeners.poll()
                reason = reason or self._stop_reason(None)
                if reason and not trials._fmin_cancelled:
                    trials._fmin_cancelled, trials._fmin_cancelled_reason = True, reason
                    self.spark.sparkContext.cancelJobGroup(group)
        except KeyboardInterrupt:
            reason = "interrupted"
            trials._fmin_cancelled = True
            self.spark.sparkContext.cancelJobGroup(group)
            thread.join(10)
        self._collect(trials)
        result.wall_time += time.monotonic() - start
        if reason is None and trials._fmin_cancelled_reason == "fmin run timeout":
            reason = "timeout"
        result.stop_reason = reason or "completed"
        self.listeners.search_finished(result)
        self._raise_if_failed()
        return result

    def _collect(self, trials: SparkTrials) -> None:
        seen = {r.tid for r in self.result.records}
        for doc in list(trials._dynamic_trials):
            if doc["tid"] in seen or doc["state"] not in (2, 3, 4):  # done, error, cancel
                continue
            params = self.space.values(doc["misc"]["vals"])
            outcome = doc["result"].get("outcome")
            if not isinstance(outcome, TrialOutcome):
                error = doc["misc"].get("error")
                outcome = TrialOutcome(tid=doc["tid"], status="cancelled" if doc["state"] == 4 else "failed")
                outcome.error = str(error[1]) if error else "cancelled by SparkTrials"
            outcome.tid = doc["tid"]
            record = TrialRecord.from_outcome(len(self.result.records), params, outcome)
            self.result.records.append(record)
            if outcome.fatal and self._fatal is None:
                self._fatal = outcome
            self.listeners.trial_finished(record)
