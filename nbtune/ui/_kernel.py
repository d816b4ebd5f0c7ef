"""Which kernel and front end a cell runs in: where widgets can show."""

from __future__ import annotations

import sys
from typing import Any


def current_kernel() -> Any | None:
    """The ipykernel kernel this code runs in, or None (terminal IPython, scripts, tests)."""
    if "ipykernel" not in sys.modules:
        return None
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return None
    shell = get_ipython()
    return getattr(shell, "kernel", None)


def in_widget_frontend() -> bool:
    """True inside a Jupyter kernel, where ipywidgets can be shown (JupyterLab, VS Code, Databricks)."""
    return current_kernel() is not None
