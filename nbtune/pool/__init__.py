"""`nbtune.Pool` and the joblib backend "nbtune": the warm pool for any parallel work.

Light on purpose: a worker imports `nbtune.pool._task` (and so this package) to run tasks.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbtune.pool._joblib import NbtuneBackend, register
    from nbtune.pool._pool import Pool
    from nbtune.pool._results import AsyncResult, PoolTerminated, RemoteTraceback, TaskFailed

__all__ = ["AsyncResult", "NbtuneBackend", "Pool", "PoolTerminated", "RemoteTraceback", "TaskFailed", "register"]

_LAZY = {
    "Pool": "nbtune.pool._pool",
    "AsyncResult": "nbtune.pool._results",
    "PoolTerminated": "nbtune.pool._results",
    "RemoteTraceback": "nbtune.pool._results",
    "TaskFailed": "nbtune.pool._results",
    "NbtuneBackend": "nbtune.pool._joblib",
    "register": "nbtune.pool._joblib",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nbtune.pool' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def hook_joblib() -> None:
    """Let `joblib.parallel_backend("nbtune")` find the backend, now or when joblib loads (not importing it)."""
    global _hooked
    parallel = sys.modules.get("joblib.parallel")
    if parallel is not None:
        _add_backend(parallel)
    elif not _hooked:  # joblib takes 0.4 s to import: wait for the user's (or a worker's cell's) import
        from nbtune.trial._after_import import AfterImport

        _hooked = True
        sys.meta_path.insert(0, AfterImport("joblib.parallel", _add_backend))


_hooked = False


def _add_backend(parallel: ModuleType) -> None:
    external = getattr(parallel, "EXTERNAL_BACKENDS", None)
    if isinstance(external, dict):
        external.setdefault("nbtune", _register)  # joblib calls it on first use of the name


def _register() -> None:
    from nbtune.pool._joblib import register as register_backend

    register_backend()
