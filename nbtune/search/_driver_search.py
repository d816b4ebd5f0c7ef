"""`--backend driver` put together: which cells need it, how many trials at once, the best model afterwards."""

from __future__ import annotations

import sys
import tempfile
import warnings
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.search._driver import DriverExecutor, DriverObjective

if TYPE_CHECKING:
    from nbtune.search._loop import Search

DEFAULT_SLOTS = 2  # two fits at once keep the cluster busy while one of them is in driver-side work


def spark_variable(captured: Mapping[str, Any]) -> tuple[str, str] | None:
    """The first notebook variable the cell reads that lives in this Spark driver: (name, 'a pyspark DataFrame')."""
    for name, value in captured.items():
        module = type(value).__module__
        if not isinstance(value, ModuleType) and module.startswith(("pyspark.sql", "pyspark.ml")):
            return name, f"a pyspark {type(value).__name__}"
    return None


def session_of(captured: Mapping[str, Any]) -> Any | None:
    """The session of a DataFrame the cell reads (the notebook may hold no `spark` variable)."""
    for value in captured.values():
        session = getattr(value, "sparkSession", None) if type(value).__name__ == "DataFrame" else None
        if session is not None:
            return session
    return None


def driver_slots(options: TuneOptions, spark: Any) -> int:
    """Trials at once: --parallelism, else 2; never more than the session's cores (one each at least)."""
    from nbtune.spark._session import default_parallelism

    cores = default_parallelism(spark)
    wanted = options.parallelism or min(DEFAULT_SLOTS, cores)
    if wanted > cores:
        raise TuneUsageError(
            f"--parallelism {wanted}: this Spark session runs {cores} task(s) at once, "
            f"so --backend driver can run at most {cores} trials at once"
        )
    return wanted


class DriverSearch:
    """A search on the driver backend; afterwards `best_model` is set and, with --log-model best, logged."""

    def __init__(self, search: Search, objective: DriverObjective) -> None:
        self.search, self.objective = search, objective

    def run(self) -> TuneResult:
        """Run the search; keep its best model even if the search then fails (SearchFailed carries the result)."""
        try:
            return self.search.run()
        finally:
            self._keep_best(self.search.result, self.search.options)

    def _keep_best(self, result: TuneResult, options: TuneOptions) -> None:
        best = result.best_trial
        result.best_model = self.objective.model_of(best.tid) if best is not None else None
        if options.log_model == "best" and best is not None:
            if result.best_model is None:
                _warn("--log-model best: the best trial left no 'model' in memory (was it resumed?)")
            elif best.mlflow_run_id is None:
                _warn("--log-model best: the best trial has no MLflow run to save its model in")
            else:
                best.model_uri = log_model(result.best_model, best.mlflow_run_id, options.tracking_uri)


def log_model(model: Any, run_id: str, tracking_uri: str | None) -> str | None:
    """Save `model` with its MLflow flavour as run `run_id`'s `model` artifact; its URI, or None with a warning."""
    from mlflow import MlflowClient

    from nbtune.trial._model_export import export_model, unpack_model

    try:
        archive = export_model(model)
        client = MlflowClient(tracking_uri=tracking_uri)
        with tempfile.TemporaryDirectory() as tmp:
            unpack_model(archive, tmp)
            client.log_artifacts(run_id, tmp, "model")
        uri = f"runs:/{run_id}/model"
        client.set_tag(run_id, "nbtune.model", uri)  # so --resume knows the trial has one
    except Exception as exc:
        _warn(f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; the best model was not saved")
        return None
    return uri


def _warn(message: str) -> None:
    from nbtune.tracking._tracker import TrackingWarning

    warnings.warn(f"nbtune: {message}", TrackingWarning, stacklevel=3)


def say_driver_chosen(options: TuneOptions, name: str, kind: str) -> None:
    """The one line `--backend auto` says when the cell's data lives in the Spark driver."""
    if not options.quiet:
        print(f"nbtune: '{name}' is {kind}: trials run on the driver (--backend driver)", file=sys.stderr)


def make_executor(spark: Any, objective: DriverObjective, options: TuneOptions, report: Any) -> DriverExecutor:
    """The executor for a search, its slots checked against the session."""
    return DriverExecutor(spark, objective, driver_slots(options, spark), report)
