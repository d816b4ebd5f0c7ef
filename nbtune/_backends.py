"""Choose where trials run: `--backend auto|local|spark|sparktrials`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nbtune._capture import check_picklable
from nbtune._errors import TuneUsageError
from nbtune._events import Listener, SearchInfo
from nbtune._local import LocalExecutor
from nbtune._objective import Objective
from nbtune._options import TuneOptions
from nbtune._payload import Packed, pack
from nbtune._result import TuneResult
from nbtune._space import SearchSpace

if TYPE_CHECKING:
    from nbtune._search import Search


def make_search(
    objective: Objective,
    space: SearchSpace,
    options: TuneOptions,
    namespace: Mapping[str, Any],
    listeners: list[Listener],
    info: SearchInfo | None = None,
    result: TuneResult | None = None,
) -> Search:
    """A search on the chosen backend (auto: the active Spark session, else a local one, else here)."""
    from nbtune._search import Search  # hyperopt (2 s to import) loads with the first search, not %load_ext

    backend = options.backend
    if backend == "local":
        if options.parallelism not in (None, 1):
            raise TuneUsageError("--backend local runs one trial at a time; drop --parallelism or use --backend spark")
        return Search(objective, space, options, LocalExecutor(objective), listeners, info, result)
    from nbtune._spark_session import SparkUnavailable, active_session, start_local_session

    spark = active_session(namespace)
    if spark is None:
        try:
            spark = start_local_session()
        except SparkUnavailable as exc:
            if backend != "auto":
                raise
            warnings.warn(f"nbtune: {exc}; running trials in this process instead", RuntimeWarning, stacklevel=2)
            return Search(objective, space, options, LocalExecutor(objective), listeners, info, result)
    packed = pack_for_workers(objective)
    if backend == "sparktrials":
        from nbtune._sparktrials import SparkTrialsSearch

        return SparkTrialsSearch(spark, objective, space, options, listeners, info)
    from nbtune._spark_pool import SparkPoolExecutor

    executor = SparkPoolExecutor(spark, packed, options.parallelism)
    return Search(objective, space, options, executor, listeners, info, result)


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
