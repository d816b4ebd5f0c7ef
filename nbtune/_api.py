"""`nbtune.tune()`: the `%%tune` engine for scripts and tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nbtune._backends import make_search
from nbtune._errors import TuneUsageError
from nbtune._events import Listener, SearchInfo
from nbtune._listeners import listeners_for
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import search_space
from nbtune.search._build import build_objective
from nbtune.tracking._resume import tracking_setup


def tune(
    cell: str,
    namespace: Mapping[str, Any] | None = None,
    *,
    listeners: Sequence[Listener] = (),
    info: SearchInfo | None = None,
    **options: Any,
) -> TuneResult:
    """Run a search over `cell` (annotated like a `%%tune` cell, without the header).

    `namespace` holds the variables the cell reads; options are the flags' names
    (`max_evals=20, metric="val_loss"`). A text progress line is shown unless `quiet=True`.
    """
    opts = TuneOptions().replace(**options)
    if opts.ui:
        raise TuneUsageError("ui=True opens a form in a notebook: use `%%tune --ui` there (tune() searches directly)")
    ns = dict(namespace or {})
    spec = parse_cell(cell)
    space = search_space(spec.params, opts.space, ns)
    objective = build_objective(spec, ns, opts, space.names)
    opts, resumed = tracking_setup(opts, ns, spec.source, space)  # experiment default, --resume
    return make_search(objective, space, opts, ns, [*listeners_for(opts), *listeners], info, resumed).run()
