"""Choose where trials run: `--backend auto|local|spark|sparktrials|driver`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Protocol

from nbtune._errors import TuneUsageError
from nbtune._events import Listener, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.search._build import check_picklable
from nbtune.search._local import LocalExecutor
from nbtune.trial._objective import Objective
from nbtune.trial._payload import Packed, pack


class Runnable(Protocol):
    """A search ready to run: nbtune's loop over an executor, or hyperopt's own SparkTrials."""

    def run(self) -> TuneResult:
        """Run the search to its end; return its result."""


def make_search(
    objective: Objective,
    space: SearchSpace,
    options: TuneOptions,
    namespace: Mapping[str, Any],
    listeners: list[Listener],
    info: SearchInfo | None = None,
    result: TuneResult | None = None,
) -> Runnable:
    """A search on the chosen backend (auto: the active Spark session, else a local one, else here).

    auto picks the driver backend when the cell reads a DataFrame or pyspark.ml object of the notebook.
    """
    from nbtune.search._driver_search import spark_variable
    from nbtune.search._loop import Search  # hyperopt (2 s to import) loads with the first search, not %load_ext
    from nbtune.search._reports import ReportHub

    hub = ReportHub(options)  # trials' reports and prune decisions, shared by the executor and the loop

    if options.hopper:  # Keras models hop over worker-resident partitions of --data
        from nbtune.hopper._search import hopper_search

        return hopper_search(objective, space, options, namespace, listeners, info, result, hub)
    backend = options.backend
    on_driver = spark_variable(objective.captured)
    if on_driver is not None and backend in ("spark", "sparktrials"):
        name, kind = on_driver
        raise TuneUsageError(
            f"variable '{name}' is {kind}, which lives in the Spark driver and cannot be sent to the workers: "
            "use --backend driver"
        )
    if backend == "driver" or (backend == "auto" and on_driver is not None):
        return driver_search(objective, space, options, namespace, listeners, info, result, hub, on_driver)
    if options.log_model == "best":  # only the driver backend holds the trials' models in memory
        raise TuneUsageError("--log-model best needs --backend driver; elsewhere use --log-model all")
    if backend == "local":
        if options.parallelism not in (None, 1):
            raise TuneUsageError("--backend local runs one trial at a time; drop --parallelism or use --backend spark")
        return Search(objective, space, options, LocalExecutor(objective, hub.report), listeners, info, result, hub)
    from nbtune.spark._session import SparkUnavailable, active_session, start_local_session

    spark = active_session(namespace)
    if spark is None:
        try:
            spark = start_local_session()
        except SparkUnavailable as exc:
            if backend != "auto":
                raise
            warnings.warn(f"nbtune: {exc}; running trials in this process instead", RuntimeWarning, stacklevel=2)
            return Search(objective, space, options, LocalExecutor(objective, hub.report), listeners, info, result, hub)
    packed = pack_for_workers(objective)
    if backend == "sparktrials":
        from nbtune.spark._sparktrials import SparkTrialsSearch

        return SparkTrialsSearch(spark, objective, space, options, listeners, info, result)
    from nbtune.spark._pool import SparkPoolExecutor

    executor = SparkPoolExecutor(spark, packed, options.parallelism, hub.report, keep_warm=options.keep_warm)
    return Search(objective, space, options, executor, listeners, info, result, hub)


def driver_search(
    objective: Objective,
    space: SearchSpace,
    options: TuneOptions,
    namespace: Mapping[str, Any],
    listeners: list[Listener],
    info: SearchInfo | None,
    result: TuneResult | None,
    hub: Any,
    on_driver: tuple[str, str] | None,
) -> Runnable:
    """Trials on driver threads over the notebook's session (or the session of the DataFrame it reads)."""
    from nbtune.search._driver import DriverObjective
    from nbtune.search._driver_search import DriverSearch, make_executor, say_driver_chosen, session_of
    from nbtune.search._loop import Search
    from nbtune.spark._session import active_session, start_local_session

    spark = active_session(namespace) or session_of(objective.captured) or start_local_session()
    driven = DriverObjective.of(objective)
    executor = make_executor(spark, driven, options, hub.report)
    if options.backend == "auto" and on_driver is not None:
        say_driver_chosen(options, *on_driver)
    return DriverSearch(Search(driven, space, options, executor, listeners, info, result, hub), driven)


def pack_for_workers(objective: Objective) -> Packed:
    """Pickle the objective once for every worker; fail early, naming the variable, if it cannot ship."""
    if "get_ipython" in objective.captured:
        raise TuneUsageError(
            "the cell uses IPython syntax (!cmd or %magic), which runs only in the notebook: "
            "move it to another cell or use --backend local"
        )
    try:
        return pack(objective)
    except Exception:
        check_picklable(objective.captured)  # names the variable that does not pickle
        raise
