"""The spine of every search: parsed cell -> space -> objective -> tracking -> backend -> result."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nbtune._backends import make_search
from nbtune._events import Listener, SearchInfo
from nbtune._listeners import listeners_for
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._parse import CellSpec
from nbtune.cell._space import search_space
from nbtune.search._build import build_objective
from nbtune.tracking._setup import tracking_setup


def run_search(
    spec: CellSpec,
    options: TuneOptions,
    namespace: Mapping[str, Any],
    *,
    listeners: Sequence[Listener] = (),
    info: SearchInfo | None = None,
    show: Callable[[Any], Any] | None = None,
) -> TuneResult:
    """Search over a parsed cell, as `%%tune`, `nbtune.tune()` and the `--ui` form's Start all do.

    `show` places the dashboard (the form puts it under itself); raises SearchFailed with the result.
    """
    if options.hopper:  # its option rules first (TuneOptions built directly skip them): --by, --backend
        from nbtune.hopper._plan import check_options

        check_options(options)
    if options.by:  # one search per group of --data, in Spark tasks
        from nbtune.groups._driver import run_groups

        return run_groups(spec, options, namespace, listeners=listeners, info=info)
    space = search_space(spec.params, options.space, namespace)
    if options.start_from_cell:
        space.cell_point()  # its UsageError before any Spark job
    objective = build_objective(spec, namespace, options, space.names)
    options, resumed = tracking_setup(options, namespace, spec.source, space)  # experiment default, --resume
    everyone = [*listeners_for(options, show), *listeners]
    return make_search(objective, space, options, namespace, everyone, info, resumed).run()
