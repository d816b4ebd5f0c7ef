"""`nbtune.tune()`: the `%%tune` engine for scripts and tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._events import Listener, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune._run import run_search
from nbtune.cell._parse import parse_cell


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
    return run_search(parse_cell(cell), opts, dict(namespace or {}), listeners=listeners, info=info)
