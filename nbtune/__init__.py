"""nbtune: `%%tune` turns an annotated notebook training cell into a distributed hyperopt search."""

from __future__ import annotations

from typing import Any

from IPython.core.error import UsageError

from nbtune import templates
from nbtune._api import tune
from nbtune._errors import TuneUsageError
from nbtune._result import TuneResult

__version__ = "0.1.0"
__all__ = ["TuneResult", "TuneUsageError", "UsageError", "load_ipython_extension", "templates", "tune"]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext nbtune`: register `%%tune` and `%tune_template`."""
    from nbtune.magic import load_ipython_extension as load

    load(ipython)
