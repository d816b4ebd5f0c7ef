"""Who watches a search: the progress display, MLflow tracking, the JupyterLab panel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nbtune._events import Listener
from nbtune._options import TuneOptions
from nbtune.lab._comm import LabListener
from nbtune.lab._comm import active as lab_active
from nbtune.tracking._tracker import MlflowTracker
from nbtune.ui._kernel import in_widget_frontend
from nbtune.ui._progress import TextProgress


def listeners_for(options: TuneOptions, show: Callable[[Any], Any] | None = None) -> list[Listener]:
    """The listeners a search gets from its options (shared by `%%tune` and `nbtune.tune`).

    `show` places the dashboard widget somewhere other than the cell's output (the `--ui` form).
    """
    listeners: list[Listener] = []
    if options.mlflow:  # first, so its search_finished has set the run links before displays redraw
        listeners.append(MlflowTracker(options))  # imports MLflow lazily, on its own thread
    if show is not None or (not options.quiet and in_widget_frontend()):
        from nbtune.ui._dashboard import Dashboard  # ipywidgets and matplotlib only where they can show

        listeners.append(Dashboard(show=show))
    elif not options.quiet:
        listeners.append(TextProgress())
    if lab_active():  # JupyterLab's Tuning panel; after MLflow, so the final update has the run links
        listeners.append(LabListener())
    return listeners
