"""Before a search: the MLflow experiment it goes to and, with `--resume`, the search it continues."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.tracking._links import on_databricks
from nbtune.tracking._resume import load_bounded
from nbtune.tracking._tracker import default_experiment


def tracking_setup(
    options: TuneOptions, namespace: Mapping[str, Any], source: str, space: SearchSpace
) -> tuple[TuneOptions, TuneResult | None]:
    """Fill in the default experiment and, with --resume, load the earlier search to continue."""
    if not options.mlflow:
        if options.resume is not None:
            raise TuneUsageError("--resume reads the earlier search from MLflow; drop --no-mlflow")
        return options, None
    if options.tracking_uri is not None:
        _check_scheme(options.tracking_uri)
    if options.experiment is None and not on_databricks():  # Databricks: the notebook's own experiment
        options = options.replace(experiment=default_experiment(namespace))
    if options.resume is None:
        return options, None
    if options.backend == "sparktrials":  # SparkTrials keeps its own Trials object: nothing to pre-fill
        raise TuneUsageError("--resume works with --backend auto, local or spark, not sparktrials")
    result = load_bounded(options, source, space)
    if not options.quiet:
        if result is None:
            print(f"nbtune: no earlier search of this cell in experiment '{options.experiment}'; starting one")
        else:
            print(f"nbtune: resuming run {result.parent_run_id} with {len(result.records)} earlier trials")
    return options, result


def _check_scheme(uri: str) -> None:
    """A URI whose scheme MLflow has no store for is bad input, not a warning halfway through the search."""
    try:
        from mlflow.tracking._tracking_service.utils import _tracking_store_registry as registry
    except ImportError:  # a future MLflow moved it: MLflow itself will say so at the first write
        return
    try:
        registry.get_store_builder(uri)  # type: ignore[no-untyped-call]
    except Exception:
        known = ", ".join(sorted(s for s in registry._registry if s))
        raise TuneUsageError(f"--tracking-uri {uri}: MLflow has no store for this scheme (it knows {known})") from None
