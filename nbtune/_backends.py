"""Choose where trials run: `--backend auto|local|spark|sparktrials`."""

from __future__ import annotations

from nbtune._errors import TuneUsageError
from nbtune._executor import Executor
from nbtune._local import LocalExecutor
from nbtune._objective import Objective
from nbtune._options import TuneOptions


def make_executor(options: TuneOptions, objective: Objective) -> Executor:
    """The executor for the chosen backend."""
    backend = options.backend
    if backend in ("spark", "sparktrials"):
        raise TuneUsageError(f"--backend {backend} is not available in this version; use --backend local")
    if backend == "local" and options.parallelism not in (None, 1):
        raise TuneUsageError("--backend local runs one trial at a time; drop --parallelism or use --backend spark")
    return LocalExecutor(objective)
