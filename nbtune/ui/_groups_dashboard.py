"""The live dashboard of a search per group (`--by`), throttled like the trials' dashboard.

Groups done / running / failed with an ETA, the spread of the best values, the worst and the failed
groups, and a Cancel button.
"""

from __future__ import annotations

import base64
import html
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from nbtune._events import Listener, SearchInfo
from nbtune._result import TuneResult
from nbtune._text import fmt
from nbtune.groups._progress import line
from nbtune.groups._result import GroupOutcome, GroupsResult
from nbtune.ui import _plots as plots
from nbtune.ui._uievents import UiEvents

_ROWS = 5  # worst groups and failed groups listed (10,000 groups would not fit a page)
_STYLE_BY_STOP = {"completed": "success", "cancelled": "warning", "interrupted": "warning", "timeout": "warning"}


class GroupDashboard(Listener):
    """Progress bar, status line, histogram of the groups' best values, worst and failed groups."""

    def __init__(
        self, interval: float = 0.5, plot_interval: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._interval, self._plot_interval, self._clock = interval, plot_interval, clock
        self._ui = UiEvents()
        self._info: SearchInfo | None = None
        self._result: GroupsResult | None = None
        self._handle: Any = None
        self._start = self._last_draw = self._last_plot = 0.0
        self._plotted = -1  # finished groups in the histogram on screen
        self._finished = False
        self.draws = 0
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info", layout=w.Layout(width="320px"))
        self.status = w.HTML()
        self.cancel_button = w.Button(description="Cancel", icon="stop", tooltip="Stop; finished groups are kept.")
        self.cancel_button.on_click(self._on_cancel)
        self.histogram = w.Image(format="png", layout=w.Layout(display="none"))
        self.table = w.HTML()
        row = w.HBox([self.bar, self.status, self.cancel_button], layout=w.Layout(align_items="center"))
        self.widget = w.VBox([row, self.histogram, self.table])
        for part, name in (
            (self.widget, "dashboard"),
            (self.bar, "progress"),
            (self.status, "status"),
            (self.cancel_button, "cancel"),
            (self.histogram, "histogram"),
            (self.table, "table"),
        ):
            part.add_class(f"nbtune-groups-{name}")

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """Show the dashboard and listen for Cancel clicks."""
        from IPython.display import display

        assert isinstance(result, GroupsResult)
        self._info, self._result = info, result
        self._start = self._clock()
        self._draw(self._start)
        self._handle = display(self._bundle(), raw=True, display_id=True)  # type: ignore[no-untyped-call]
        self._ui.start()

    def poll(self) -> None:
        """Handle Cancel clicks; redraw at most every `interval` seconds."""
        self._ui.poll()
        now = self._clock()
        if now - self._last_draw >= self._interval:
            self._draw(now)

    def search_finished(self, result: TuneResult) -> None:
        """The exact final state, kept as the search's summary (static HTML for viewers without widgets)."""
        self._ui.stop()
        self._finished = True
        self._draw(self._clock(), final=True)
        if self._handle is not None:
            self._handle.update(self._bundle(final=True), raw=True)

    def _on_cancel(self, _button: Any = None) -> None:
        if self._info is None or self._finished:
            return
        self._info.cancel()
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling..."

    def _draw(self, now: float, final: bool = False) -> None:
        result = self._result
        if result is None:
            return
        self.draws += 1
        self._last_draw = now
        counts = result.group_counts()
        done = counts.get("ok", 0) + counts.get("failed", 0)
        self.bar.max, self.bar.value = max(1, len(result.outcomes)), done
        status = line(result, now - self._start).split("] ", 1)[-1]  # the text line without its own bar
        self.status.value = html.escape(status)
        if final or (done != self._plotted and now - self._last_plot >= self._plot_interval):
            self._draw_histogram(result, done, now)
        self.table.value = groups_table(result)
        if final:
            self.bar.bar_style = _STYLE_BY_STOP.get(result.stop_reason, "danger")
            self.cancel_button.layout.display = "none"

    def _draw_histogram(self, result: GroupsResult, done: int, now: float) -> None:
        self._plotted, self._last_plot = done, now
        values = [v for v in result.best_values.values() if v is not None]
        if len(values) < 2:
            return
        self.histogram.value = best_values_histogram(values, result.metric)
        self.histogram.layout.display = None

    def _bundle(self, final: bool = False) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_())
        if final and self._result is not None:
            bundle["text/plain"] = self._result.summary()
            image = self.histogram.value if self.histogram.layout.display != "none" else b""
            img = f'<img src="data:image/png;base64,{base64.b64encode(bytes(image)).decode()}"/>' if image else ""
            bundle["text/html"] = f"<div>{self.status.value}</div>{img}{self.table.value}"
        return bundle


def best_values_histogram(values: list[float], metric: str) -> bytes:
    """PNG: how the groups' best values spread."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.hist(values, bins=min(30, max(5, len(values) // 4)), color="#4c72b0")
        plots._label(ax, f"best {metric} of each group", metric, "groups")

    return plots._render(draw)


def groups_table(result: GroupsResult) -> str:
    """HTML: the worst groups by their best value, then the failed groups with their errors."""
    sign = 1.0 if result.mode == "min" else -1.0
    ok = [g for g in result.outcomes if g.status == "ok" and g.best_value is not None]
    worst = sorted(ok, key=lambda g: -sign * (g.best_value or 0.0))[:_ROWS]
    failed = [g for g in result.outcomes if g.status == "failed"]
    rows = [_row(result, g, fmt(g.best_value)) for g in worst]
    rows += [_row(result, g, f"failed: {html.escape(g.error or '')}") for g in failed[:_ROWS]]
    if len(failed) > _ROWS:
        rows.append(f"<tr><td colspan=3>... {len(failed) - _ROWS} more failed groups in _tune.groups</td></tr>")
    if not rows:
        return ""
    head = f"<tr><th>group</th><th>{html.escape(result.metric)}</th><th>run</th></tr>"
    caption = "<caption>worst groups" + (" and failed groups" if failed else "") + "</caption>"
    return f'<table class="nbtune-groups">{caption}{head}{"".join(rows)}</table>'


def _row(result: GroupsResult, g: GroupOutcome, value: str) -> str:
    key = html.escape(", ".join(f"{k}={v}" for k, v in zip(result.keys, g.key, strict=True)))
    link = f'<a href="{html.escape(g.mlflow_url)}" target="_blank">MLflow</a>' if g.mlflow_url else ""
    return f"<tr><td>{key}</td><td>{value}</td><td>{link}</td></tr>"
