"""`--backend sparktrials`: hyperopt's own SparkTrials, for comparison and compatibility."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from typing import Any

import numpy as np
from hyperopt import STATUS_FAIL, STATUS_OK, fmin
from hyperopt.spark import SparkTrials

from nbtune._events import Listener, Listeners, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.search import _history as history
from nbtune.search._loop import grid_evals, search_info
from nbtune.search._policy import StopPolicy, StopReason
from nbtune.trial._objective import Objective
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest


def _trial_fn(objective: Objective, space: SearchSpace, trial_timeout: float | None) -> Any:
    """The function SparkTrials ships (pickled again for every trial) to a fresh Python worker."""
    mode = objective.mode

    def fn(values: dict[str, Any]) -> dict[str, Any]:
        params = space.convert(values)
        outcome = objective.run(TrialRequest(tid=0, params=params, timeout=trial_timeout))
        if outcome.status == "ok" and outcome.value is not None:
            return {"status": STATUS_OK, "loss": history.loss_of(outcome.value, mode), "outcome": outcome}
        return {"status": STATUS_FAIL, "outcome": outcome}

    return fn


class SparkTrialsSearch:
    """Runs hyperopt.fmin with SparkTrials on a thread and reports its trials as they finish."""

    def __init__(
        self,
        spark: Any,
        objective: Objective,
        space: SearchSpace,
        options: TuneOptions,
        listeners: list[Listener] | None = None,
        info: SearchInfo | None = None,
        result: TuneResult | None = None,
    ) -> None:
        options = grid_evals(options, space)  # --algo grid: the whole grid by default, as on the other backends
        self.spark, self.objective, self.space, self.options = spark, objective, space, options
        self.slots = options.parallelism or int(spark.sparkContext.defaultParallelism)
        self.listeners = Listeners(listeners or [])
        self.info = info or search_info(options, space, objective, "sparktrials", self.slots)
        self.result = result or TuneResult(options.metric, options.mode, space.names, options.log_metrics)
        self.result.backend, self.result.parallelism = "sparktrials", self.slots
        self.result.max_evals = options.max_evals

    def run(self) -> TuneResult:
        """Run fmin on a thread; the notebook thread streams events and handles stops."""
        opts, result = self.options, self.result
        # hyperopt wraps each trial's thread without the session, and pyspark 4 warns that job tags are not
        # inherited. This backend stops trials by job group, which is still inherited: the warning is noise.
        warnings.filterwarnings("ignore", "Spark session is not provided. Tags will not be inherited.", UserWarning)
        trials = SparkTrials(parallelism=self.slots, spark_session=self.spark)
        if opts.start_from_cell:
            history.queue_given(trials, self.space.cell_point())
        result.trials = trials
        policy = StopPolicy(opts, result, self.slots, self.info.cancel_event, None)
        group = f"nbtune-sparktrials-{uuid.uuid4().hex[:8]}"
        errors: list[BaseException] = []

        def drive() -> None:
            self.spark.sparkContext.setJobGroup(group, "nbtune sparktrials", interruptOnCancel=True)
            try:
                fmin(
                    _trial_fn(self.objective, self.space, opts.trial_timeout),
                    self.space.hyperopt_space(),
                    algo=self.space.grid_algo() if opts.algo == "grid" else history.ALGORITHMS[opts.algo],
                    max_evals=opts.max_evals,
                    trials=trials,
                    timeout=opts.timeout,
                    rstate=np.random.default_rng(opts.seed),
                    show_progressbar=False,
                )
            except BaseException as exc:  # reported on the notebook thread
                errors.append(exc)

        start = time.monotonic()
        reason: StopReason | None = None
        self.listeners.search_started(self.info, result)
        thread = threading.Thread(target=drive, name="nbtune-sparktrials", daemon=True)
        thread.start()
        try:
            while thread.is_alive():
                thread.join(0.1)
                self._collect(trials, policy)
                self.listeners.poll()
                reason = reason or policy.reason()
                if reason and history.stop_fmin(trials, reason):
                    self.spark.sparkContext.cancelJobGroup(group)
        except KeyboardInterrupt:
            reason = "interrupted"
            history.stop_fmin(trials, reason)
            self.spark.sparkContext.cancelJobGroup(group)
            thread.join(10)
        self._collect(trials, policy)
        result.wall_time += time.monotonic() - start
        if reason is None and history.fmin_timed_out(trials):
            reason = "timeout"
        result.stop_reason = reason or "completed"
        self.listeners.search_finished(result)
        policy.raise_if_failed()
        return result

    def _collect(self, trials: SparkTrials, policy: StopPolicy) -> None:
        for doc in history.finished_docs(trials, {r.tid for r in self.result.records}):
            vals = history.plain_vals(doc["misc"]["vals"])
            outcome = doc["result"].get("outcome")
            if not isinstance(outcome, TrialOutcome):
                cancelled = history.doc_cancelled(doc)
                outcome = TrialOutcome(tid=doc["tid"], status="cancelled" if cancelled else "failed")
                outcome.error = history.doc_error(doc) or "cancelled by SparkTrials"
            outcome.tid = doc["tid"]
            number = len(self.result.records)
            record = TrialRecord.from_outcome(outcome, number=number, params=self.space.values(vals), vals=vals)
            self.result.records.append(record)
            policy.saw(outcome)
            self.listeners.trial_finished(record)
