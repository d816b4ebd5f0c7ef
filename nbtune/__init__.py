"""nbtune: `%%tune` turns an annotated notebook training cell into a distributed hyperopt search."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from IPython.core.error import UsageError

    from nbtune import templates
    from nbtune._api import tune
    from nbtune._errors import TuneUsageError
    from nbtune._events import Listener, SearchInfo
    from nbtune._result import TuneResult
    from nbtune.pool._pool import Pool
    from nbtune.trial._records import TrialRecord
    from nbtune.trial._report import TrialPruned, report

__version__ = "0.1.0"
__all__ = [
    "Listener",
    "Pool",
    "SearchInfo",
    "TrialPruned",
    "TrialRecord",
    "TuneResult",
    "TuneUsageError",
    "UsageError",
    "load_ipython_extension",
    "report",
    "templates",
    "tune",
]

# Spark workers import nbtune's worker modules; the public names load on first use so that
# a worker does not pay for IPython and hyperopt it never needs.
_LAZY = {
    "tune": ("nbtune._api", "tune"),
    "TuneResult": ("nbtune._result", "TuneResult"),
    "Listener": ("nbtune._events", "Listener"),  # the hooks of `tune(listeners=...)`
    "SearchInfo": ("nbtune._events", "SearchInfo"),
    "TrialRecord": ("nbtune.trial._records", "TrialRecord"),
    "report": ("nbtune.trial._report", "report"),  # light: a trial imports it on the worker
    "TrialPruned": ("nbtune.trial._report", "TrialPruned"),
    "TuneUsageError": ("nbtune._errors", "TuneUsageError"),
    "UsageError": ("IPython.core.error", "UsageError"),
    "templates": ("nbtune.templates", None),
    "Pool": ("nbtune.pool._pool", "Pool"),  # multiprocessing.Pool on the warm pool (registers joblib's "nbtune")
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nbtune' has no attribute {name!r}")
    import importlib

    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext nbtune`: register `%%tune` and `%tune_template`."""
    from nbtune.magic import load_ipython_extension as load

    load(ipython)


# joblib.parallel_backend("nbtune") works after `import nbtune`, on the driver and in a worker's cells;
# this imports neither joblib nor the backend until joblib is loaded and the name is used.
from nbtune.pool import hook_joblib as _hook_joblib  # noqa: E402

_hook_joblib()
