"""The live tuning dashboard: one ipywidgets tree per search, updated in place on a throttled timer."""

from __future__ import annotations

import base64
import html
import random
import time
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from nbtune._events import Listener, SearchInfo
from nbtune._result import TuneResult
from nbtune._text import clock, is_finite_number
from nbtune.analysis._importance import importance, min_trials
from nbtune.trial._records import TrialRecord
from nbtune.ui import _analysis_plots as analysis_plots
from nbtune.ui import _plots as plots
from nbtune.ui._table import RunningTrial, best_html, trials_table
from nbtune.ui._uievents import UiEvents

# Bar styles, as tqdm's notebook bar: the colour says how the search ended.
_IMPORTANCE_SAMPLE = 2000  # trials the live importance plot fits its forest to
_STYLE_BY_STOP = {
    "completed": "success",
    "early-stop": "success",
    "cancelled": "warning",
    "interrupted": "warning",
    "timeout": "warning",
}
_TOOLTIP_LOCAL = (
    "Stop the search. The local backend runs trials inside this kernel: the running trial stops at its "
    "next Python line (a long native call finishes first). Finished trials are kept."
)
_TOOLTIP = "Stop the search now, as a kernel interrupt would. Finished trials are kept."


def _display(bundle: dict[str, Any]) -> Any:
    """Show a mime bundle in the cell's output; the handle updates it in place."""
    from IPython.display import display

    return display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]


class Dashboard(Listener):
    """Progress, counts, best result, trials table and plots of one search, with a Cancel button.

    Events only mark the snapshot dirty; widgets are redrawn from it at most every `interval`
    seconds (plots every `plot_interval`), and exactly once more when the search ends. Reports of
    running trials (`trial_reported`) feed the learning curves between trial ends.
    """

    def __init__(
        self,
        show: Callable[[w.Widget], Any] | None = None,
        interval: float = 0.25,
        plot_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._show = show  # None: the cell's output, with a static summary for viewers without widgets
        self._handle: Any = None
        self._interval = interval
        self._plot_interval = plot_interval
        self._clock = clock
        self._ui = UiEvents()
        self._info: SearchInfo | None = None
        self._result: TuneResult | None = None
        self._running: dict[int, RunningTrial] = {}
        # (step, --metric) of each running trial's reports so far, by trial number; a finished
        # trial's curve comes from its record.
        self.live_curves: dict[int, list[plots.Point]] = {}
        self._reports = 0  # reports received so far
        self._plotted_reports = -1  # ... of which the learning curves on screen show
        self._start = self._last_draw = self._last_plot = 0.0
        self._plot_every = plot_interval
        self._plotted = -1  # number of finished trials in the plots on screen
        self._importance_ok = 0  # ok trials the importance on screen was computed from
        self._dirty = False
        self._finished = False
        self.draws = 0  # redraws so far (tests and benchmarks look at it)
        self._build()

    # -- the widget tree, built once ------------------------------------------------------

    def _build(self) -> None:
        self.header = w.HTML()
        self.bar = w.IntProgress(value=0, min=0, max=1, bar_style="info", layout=w.Layout(width="320px"))
        self.status = w.HTML()
        self.cancel_button = w.Button(description="Cancel", icon="stop", tooltip=_TOOLTIP)
        self.cancel_button.on_click(self._on_cancel)
        self.best = w.HTML()
        self.metric_plot = w.Image(format="png", layout=w.Layout(display="none"))
        self.curves_plot = w.Image(format="png", layout=w.Layout(display="none"))
        self.histogram = w.Image(format="png", layout=w.Layout(display="none"))
        self.param_plot = w.Image(format="png", layout=w.Layout(display="none"))
        self.parallel_plot = w.Image(format="png", layout=w.Layout(display="none"))
        self.importance_plot = w.Image(format="png", layout=w.Layout(display="none"))
        self.placement_plot = w.Image(format="png", layout=w.Layout(display="none"))  # hopper searches
        self.table = w.HTML()
        row = w.HBox([self.bar, self.status, self.cancel_button], layout=w.Layout(align_items="center"))
        plots_row = w.HBox(self._plots(), layout=w.Layout(flex_flow="row wrap"))
        self.widget = w.VBox([self.header, row, self.best, plots_row, self.table])
        for part, name in (
            (self.widget, "dashboard"),
            (self.header, "header"),
            (self.bar, "progress"),
            (self.status, "status"),
            (self.cancel_button, "cancel"),
            (self.best, "best"),
            (self.metric_plot, "metric-plot"),
            (self.curves_plot, "curves-plot"),
            (self.histogram, "histogram"),
            (self.param_plot, "param-plot"),
            (self.parallel_plot, "parallel-plot"),
            (self.importance_plot, "importance-plot"),
            (self.placement_plot, "placement-plot"),
            (self.table, "table"),
        ):
            part.add_class(f"nbtune-{name}")  # stable hooks for the browser tests and for styling

    def _plots(self) -> list[w.Image]:
        return [
            self.metric_plot,
            self.curves_plot,
            self.histogram,
            self.param_plot,
            self.parallel_plot,
            self.importance_plot,
            self.placement_plot,
        ]

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def _bundle(self, result: TuneResult, final: bool = False) -> dict[str, Any]:
        bundle = dict(self.widget._repr_mimebundle_())
        bundle["text/plain"] = result.summary() if final else "nbtune dashboard (needs ipywidgets)"
        if final:
            images = "".join(
                f'<img src="data:image/png;base64,{base64.b64encode(bytes(i.value)).decode()}"/>'
                for i in self._plots()
                if i.layout.display != "none" and i.value
            )
            parts = (self.header.value, self.status.value, self.best.value, images, self.table.value)
            bundle["text/html"] = '<div class="nbtune-summary">' + "".join(f"<div>{p}</div>" for p in parts) + "</div>"
        return bundle

    # -- search events ----------------------------------------------------------------------

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """Show the dashboard and start listening for Cancel clicks."""
        self._info, self._result = info, result
        result.dashboard = self
        self._start = self._clock()
        opts = info.options
        self.bar.max = max(1, opts.max_evals)
        if info.backend == "local":
            self.cancel_button.tooltip = _TOOLTIP_LOCAL
        self._draw(self._start)
        if self._show is not None:
            self._show(self.widget)
        else:
            self._handle = _display(self._bundle(result))
        self._ui.start()

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """Count a running trial."""
        self._running[number] = RunningTrial(number, dict(params), self._clock())
        self._touch()

    def trial_reported(self, number: int, step: int, metrics: dict[str, float]) -> None:
        """Extend a running trial's learning curve and the step shown in its table row."""
        if number in self._running:
            self._running[number].step = step
        value = metrics.get(self._result.metric) if self._result is not None else None
        if value is not None and is_finite_number(value):
            self.live_curves.setdefault(number, []).append((step, float(value)))
            self._reports += 1
        self._touch()

    def trial_finished(self, record: TrialRecord) -> None:
        """Count a finished trial (its curve is in the record from now on)."""
        self._running.pop(record.number, None)
        self.live_curves.pop(record.number, None)
        self._touch()

    def poll(self) -> None:
        """Handle Cancel clicks, then redraw if it is time."""
        self._ui.poll()
        self._touch(changed=False)

    def search_finished(self, result: TuneResult) -> None:
        """Draw the exact final state and leave the dashboard as the search's summary."""
        self._ui.stop()
        self._finished = True
        self._running.clear()
        self.live_curves.clear()
        self._draw(self._clock(), final=True)
        if self._handle is not None:
            # Front ends that show the widget keep showing it; nbconvert, GitHub and a notebook
            # saved without widget state show the same summary as static HTML.
            self._handle.update(self._bundle(result, final=True), raw=True)

    # -- cancel -----------------------------------------------------------------------------

    def _on_cancel(self, _button: Any = None) -> None:
        # May run on a kernel subshell's thread: only set flags here, the search thread redraws.
        if self._info is None or self._finished:
            return
        self._info.cancel()
        self.cancel_button.disabled = True
        self.cancel_button.description = "Cancelling..."

    # -- drawing ----------------------------------------------------------------------------

    def _touch(self, changed: bool = True) -> None:
        self._dirty = self._dirty or changed
        if not self._running:
            # Between trials: the next one starts in a moment (or the search ends and draws its
            # final state). Drawing at that start instead shows "running 1" during a long local
            # trial rather than a stale "running 0".
            return
        now = self._clock()
        since = now - self._last_draw
        # Redraw when something changed (a few times a second at most), else once a second for the clocks.
        if (self._dirty and since >= self._interval) or since >= 1.0:
            self._draw(now)

    def _draw(self, now: float, final: bool = False) -> None:
        info, result = self._info, self._result
        if info is None or result is None:
            return
        self.draws += 1
        self._last_draw, self._dirty = now, False
        records, running = list(result.records), list(self._running.values())
        best = result.best_trial
        self.header.value = self._header_html(info, result)
        self.bar.value = min(len(records), self.bar.max)
        self.status.value = self._status_html(result, len(running), now, final)
        self.best.value = best_html(result.metric, result.mode, best)
        columns = (result.metric, result.param_names, result.log_metrics)
        self.table.value = trials_table(records, running, best, columns, now, info.options.out)
        trials_changed = len(records) != self._plotted
        # A hopper search's strip moves on between reports: it redraws on the plots' clock.
        curves_changed = trials_changed or self._reports != self._plotted_reports or info.placement is not None
        if final or (now - self._last_plot >= self._plot_every and curves_changed):
            self._draw_plots(records, result, now, all_plots=final or trials_changed)
        if final:
            self.bar.bar_style = self._final_style(result)
            self.cancel_button.layout.display = "none"

    def _draw_plots(self, records: list[TrialRecord], result: TuneResult, now: float, all_plots: bool) -> None:
        """Redraw the learning curves, and with `all_plots` the plots of finished trials too."""
        started = time.perf_counter()
        if all_plots:
            ok = [r for r in records if r.status == "ok" and r.value is not None]
            finished = [r for r in records if r.status != "cancelled"]
            if ok:
                _set_png(self.metric_plot, plots.metric_curve(ok, result.metric, result.mode))
                if 1 <= len(result.param_names) <= 2:
                    _set_png(self.param_plot, plots.param_plot(ok, result.param_names, result.metric))
            if finished:
                _set_png(self.histogram, plots.png(plots.durations(finished)))
            if len(ok) >= 2 and result.param_names:
                figure = analysis_plots.parallel_coordinates(ok, result.param_names, result.metric, result.mode)
                _set_png(self.parallel_plot, plots.png(figure))
            self._draw_importance(ok, result, final=self._finished)
            self._plotted = len(records)
        lines = plots.curve_lines(records, self.live_curves, result.best_trial, result.metric)
        if lines:  # hidden until some trial reported the metric
            _set_png(self.curves_plot, plots.learning_curves(lines, result.metric))
        placement = self._info.placement if self._info is not None else None
        if placement is not None:
            workers, bars = placement()
            if bars:
                _set_png(self.placement_plot, plots.placement(workers, bars))
        self._last_plot, self._plotted_reports = now, self._reports
        # Slow plots (a busy machine) redraw less often, so the display never costs much of a search.
        self._plot_every = max(self._plot_interval, 10 * (time.perf_counter() - started))

    def _draw_importance(self, ok: list[TrialRecord], result: TuneResult, final: bool) -> None:
        """Parameter importance, once there are enough trials; again only as they grow by a quarter (it costs ~1 s)."""
        enough = len(ok) >= min_trials(len(result.param_names)) and result.param_names
        if not enough or len(ok) == self._importance_ok or (not final and len(ok) < 1.25 * self._importance_ok):
            return
        # While the search runs, a sample: the forest over 10,000 trials takes seconds (the final draw uses all).
        sample = ok if final or len(ok) <= _IMPORTANCE_SAMPLE else random.Random(0).sample(ok, _IMPORTANCE_SAMPLE)
        table = importance(sample, result.param_names, result.metric)
        _set_png(self.importance_plot, plots.png(analysis_plots.importance(table)))
        self._importance_ok = len(ok)

    def _header_html(self, info: SearchInfo, result: TuneResult) -> str:
        opts = info.options
        direction = "minimise" if opts.mode == "min" else "maximise"
        parts = [
            f"<b>{html.escape(info.name)}</b>",
            f"backend {html.escape(info.backend)} &times; {info.parallelism}",
            f"algorithm {html.escape(opts.algo)}",
            f"{direction} <code>{html.escape(opts.metric)}</code>",
        ]
        if result.parent_url:
            parts.append(f'<a href="{html.escape(result.parent_url)}" target="_blank">MLflow run</a>')
        return " &middot; ".join(parts)

    def _status_html(self, result: TuneResult, running: int, now: float, final: bool) -> str:
        counts = result.counts()
        done, total = len(result.records), self.bar.max
        elapsed = now - self._start
        parts = [
            f"<b>{done}/{total}</b> trials",
            f"running {running}",
            f"ok {counts['ok']}",
            f"failed {counts['failed']}",
            f"cancelled {counts['cancelled']}",
            f"{clock(elapsed)} elapsed",
        ]
        if counts["pruned"] or (self._info is not None and self._info.options.prune != "none"):
            parts.insert(3, f"pruned {counts['pruned']}")
        if final:
            parts.insert(0, f"<b>{html.escape(result.stop_reason)}</b>")
        elif self.cancel_button.disabled:
            parts.insert(0, "<b>cancelling</b>")
        elif 0 < done < total:
            parts.append(f"ETA {clock(elapsed / done * (total - done))}")
        return '<span class="nbtune-counts">' + " &middot; ".join(parts) + "</span>"

    @staticmethod
    def _final_style(result: TuneResult) -> str:
        if result.best_trial is None:
            return "danger"
        return _STYLE_BY_STOP.get(result.stop_reason, "danger")


def _set_png(image: w.Image, png: bytes) -> None:
    image.value = png
    image.layout.display = ""
