"""Build a hopper search on the driver: check the cell and --data, partition the rows, start the executor."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbtune._errors import TuneUsageError
from nbtune._events import Listener, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._space import SearchSpace
from nbtune.groups._plan import is_spark_frame
from nbtune.hopper._frame import FramePlan
from nbtune.hopper._plan import HopperPlan, make_plan, partition
from nbtune.hopper._runner import HopperRunner
from nbtune.hopper._schedule import HopSchedule
from nbtune.hopper._strip import Bar, bars
from nbtune.trial._objective import Objective

if TYPE_CHECKING:
    from nbtune.search._loop import Search


def hopper_search(
    objective: Objective,
    space: SearchSpace,
    options: TuneOptions,
    namespace: Mapping[str, Any],
    listeners: list[Listener],
    info: SearchInfo | None,
    result: TuneResult | None,
    hub: Any,
) -> Search:
    """The search loop over a HopperExecutor on the notebook's Spark session (or a local one)."""
    from nbtune.hopper._executor import HopperExecutor
    from nbtune.search._build import check_picklable
    from nbtune.search._loop import Search
    from nbtune.spark._session import SparkUnavailable, active_session, default_parallelism, start_local_session

    if "get_ipython" in objective.captured:
        raise TuneUsageError("the cell uses IPython syntax (!cmd or %magic), which runs only in the notebook")
    data: Any = namespace.get(options.data or "")
    spark = data.sparkSession if is_spark_frame(data) else active_session(namespace)  # --data DF: its session
    if spark is None:
        try:
            spark = start_local_session()
        except SparkUnavailable as exc:
            raise TuneUsageError(f"--hopper needs Spark: {exc}") from None
    workers = default_parallelism(spark)
    plan = make_plan(objective.body, options, namespace, workers, objective.line_offset)
    # Every worker gets the cell and its variables, but of --data only its own partition.
    names = plan.names if isinstance(plan, HopperPlan) else [plan.name]
    captured = {name: value for name, value in objective.captured.items() if name not in names}
    check_picklable(captured)
    local = dataclasses.replace(objective, captured=captured)
    report = hub.report if options.autoreport else None  # --no-autoreport: no per-epoch reports, as for Keras' fit
    runner = HopperRunner(local, plan.validation)
    resident: list[dict[str, Any]] | FramePlan
    if isinstance(plan, HopperPlan):
        resident = partition(plan.train, workers, options.seed)
    else:  # a Spark DataFrame: each slot's task reads its own rows, which never pass through the driver
        runner.frame = (plan.name, plan.columns)
        resident = plan
    executor = HopperExecutor(
        spark, runner, resident, report, metric=options.metric, mode=options.mode, models=options.parallelism
    )
    search = Search(objective, space, options, executor, listeners, info, result, hub)
    search.info.placement = lambda: placement(executor.schedule, search)
    return search


def placement(schedule: HopSchedule, search: Search) -> tuple[int, list[Bar]]:
    """Which trial trained on which worker so far, for the dashboard's strip."""
    return schedule.workers, bars(schedule.visits, search.numbers(), time.monotonic())
