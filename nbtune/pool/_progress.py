"""A map's progress: a widget in notebooks, a text line elsewhere, only once it runs past a second."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

_AFTER = 1.0  # seconds before a bar appears: short maps show nothing
_EVERY = 0.25  # seconds between redraws of the text line


class Progress:
    """`nbtune.Pool map: [#######.............] 3500/10000  00:12`, redrawn in place."""

    def __init__(self, total: int, label: str, enabled: bool = True, stream: TextIO | None = None) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self._stream = stream
        self._start = time.monotonic()
        self._drawn = 0.0
        self._done = -1
        self._widget: Any = None
        self._shown = False

    def update(self, done: int, final: bool = False) -> None:
        """Show `done` of the total (from the caller's thread: a notebook shows output there)."""
        if not self.enabled:
            return
        now = time.monotonic()
        if not self._shown and (now - self._start < _AFTER or final):
            return
        if not final and (now - self._drawn < _EVERY or (done == self._done and now - self._drawn < 1.0)):
            return  # redraw when the count moves, and each second for the clock
        self._drawn, self._done = now, done
        if not self._shown:
            self._shown = True
            self._widget = _widget(self.total, self.label) if self._stream is None else None
        if self._widget is not None:
            bar, text = self._widget
            bar.value = done
            text.value = f"{done}/{self.total}  {_clock(now - self._start)}"
            if final:
                bar.bar_style = "success" if done == self.total else "danger"
            return
        stream = self._stream or sys.stderr
        width = 20
        filled = int(width * done / self.total) if self.total else width
        line = (
            f"\r{self.label}: [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}  {_clock(now - self._start)}"
        )
        stream.write(line + ("\n" if final else ""))
        stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 60:02d}:{s % 60:02d}"


def _widget(total: int, label: str) -> tuple[Any, Any] | None:
    """An ipywidgets bar and label shown in the running cell, or None outside a notebook."""
    from nbtune.ui._kernel import in_widget_frontend

    if not in_widget_frontend():
        return None
    import ipywidgets as w
    from IPython.display import display

    bar = w.IntProgress(value=0, min=0, max=max(total, 1), description=label)
    text = w.Label()
    display(w.HBox([bar, text]))  # type: ignore[no-untyped-call]
    return bar, text
