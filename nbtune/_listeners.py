"""Who watches a search: the progress display, MLflow tracking, the JupyterLab panel."""

from __future__ import annotations

from nbtune._events import Listener
from nbtune._options import TuneOptions
from nbtune._progress import TextProgress


def listeners_for(options: TuneOptions) -> list[Listener]:
    """The listeners a search gets from its options (shared by `%%tune` and `nbtune.tune`)."""
    listeners: list[Listener] = []
    if not options.quiet:
        listeners.append(TextProgress())
    return listeners
