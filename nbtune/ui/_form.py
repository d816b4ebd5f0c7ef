"""The `%%tune --ui` form: tune a cell's annotated parameters from widgets instead of editing code."""

from __future__ import annotations

import dataclasses
import html
import threading
from collections.abc import Callable
from typing import Any

import ipywidgets as w

from nbtune._errors import TuneUsageError
from nbtune._options import ALGOS, MODES, TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._parse import CellSpec
from nbtune.cell._space import DISTRIBUTIONS, Param, parse_annotation

# (spec, options, show) -> result: the magic's own pipeline, `show` places the dashboard in the form.
RunSearch = Callable[[CellSpec, TuneOptions, Callable[[Any], Any]], TuneResult]
_LABEL = w.Layout(width="130px")
_FIELD = w.Layout(width="150px")


class ParamRow:
    """One annotated parameter: its distribution and the distribution's arguments, editable."""

    def __init__(self, param: Param) -> None:
        self.name = param.name
        self.default = param.default
        self.dist = w.Dropdown(options=list(DISTRIBUTIONS), value=param.dist, layout=w.Layout(width="130px"))
        self.args = w.HBox()
        self._set_args(param.dist, [repr(a) for a in param.args])
        self.dist.observe(self._dist_changed, names="value")
        label = w.HTML(f"<code>{html.escape(param.name)}</code>", layout=_LABEL)
        self.widget = w.HBox([label, self.dist, self.args])
        self.widget.add_class("nbtune-form-param")

    def _set_args(self, dist: str, values: list[str]) -> None:
        if dist == "choice":
            text = w.Text(", ".join(values), placeholder='"a", "b", 3', layout=w.Layout(width="310px"))
            text.add_class("nbtune-form-choices")
            self.args.children = (text,)
            return
        names = DISTRIBUTIONS[dist]
        values = [*values, *[""] * len(names)][: len(names)]
        fields = []
        for name, value in zip(names, values, strict=True):
            field = w.Text(value, placeholder=name, description=name, layout=_FIELD)
            field.style.description_width = "45px"
            fields.append(field)
        self.args.children = tuple(fields)

    def _dist_changed(self, change: dict[str, Any]) -> None:
        old = [f.value for f in self.args.children]
        if change["old"] == "choice":  # a list of options does not carry over to bounds
            old = []
        elif change["new"] == "choice":
            old = [", ".join(v for v in old if v.strip())]
        self._set_args(change["new"], old)

    def param(self) -> Param:
        """The parameter as the row now describes it; bad input is a TuneUsageError naming it."""
        texts = [f.value.strip() for f in self.args.children]
        annotation = f"{self.dist.value}({', '.join(texts)})"
        try:
            return parse_annotation(self.name, annotation, None, self.default)
        except TuneUsageError as exc:
            raise TuneUsageError(f"{self.name}: {exc.reason}") from None


class TuneForm:
    """The form `%%tune --ui` shows; Start runs the same search the flags would, in the background."""

    def __init__(self, spec: CellSpec, options: TuneOptions, run: RunSearch) -> None:
        self._spec, self._options, self._run_search = spec, options, run
        self.rows = [ParamRow(p) for p in spec.params]
        self.max_evals = w.BoundedIntText(options.max_evals, min=1, max=100_000, description="max evals")
        self.parallelism = w.BoundedIntText(
            options.parallelism or 0, min=0, max=4096, description="parallelism", tooltip="0: the backend decides"
        )
        self.algo = w.Dropdown(options=list(ALGOS), value=options.algo, description="algorithm")
        self.metric = w.Text(options.metric, description="metric")
        self.mode = w.Dropdown(options=list(MODES), value=options.mode, description="mode")
        self.start_button = w.Button(description="Start", icon="play", button_style="primary")
        self.start_button.on_click(self._start)
        self.message = w.HTML()
        self.slot = w.VBox()  # the search's dashboard goes here
        self.result: TuneResult | None = None
        self._thread: threading.Thread | None = None
        params: list[w.Widget] = [r.widget for r in self.rows]
        if spec.params == [] and options.space:
            params = [w.HTML(f"parameters from the hyperopt space <code>{html.escape(options.space)}</code>")]
        settings = w.HBox([self.max_evals, self.parallelism, self.algo, self.metric, self.mode])
        settings.layout.flex_flow = "row wrap"
        title = w.HTML("<b>%%tune</b>: choose the search space and settings, then Start")
        self.widget = w.VBox([title, *params, settings, w.HBox([self.start_button, self.message]), self.slot])
        for part, name in ((self.widget, "form"), (self.start_button, "start"), (self.message, "form-message")):
            part.add_class(f"nbtune-{name}")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def values(self) -> tuple[CellSpec, TuneOptions]:
        """The cell and options the form describes now; bad input is a TuneUsageError."""
        params = [row.param() for row in self.rows]
        metric = self.metric.value.strip()
        # A renamed metric must be one the cell assigns, as with --metric.
        if metric and metric != self._options.metric and metric not in self._spec.binds:
            raise TuneUsageError(f"metric: the cell never assigns '{metric}'")
        options = self._options.replace(
            max_evals=self.max_evals.value,
            parallelism=self.parallelism.value or None,
            algo=self.algo.value,
            metric=metric,
            mode=self.mode.value,
            ui=False,
        )
        return dataclasses.replace(self._spec, params=params), options

    @property
    def running(self) -> bool:
        """Whether a search started from this form is still going."""
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> TuneResult | None:
        """Wait for the search started with Start (scripts and tests); its result, or None."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    def _start(self, _button: Any = None) -> None:
        if self.running:
            return
        try:
            spec, options = self.values()
        except TuneUsageError as exc:
            self._say(str(exc), error=True)
            return
        self._say("")
        self.start_button.disabled = True
        # The search runs on its own thread, so the kernel stays free for the dashboard's Cancel
        # button whichever front end (and subshell support) this is.
        self._thread = threading.Thread(target=self._search, args=(spec, options), name="nbtune-form", daemon=True)
        self._thread.start()

    def _search(self, spec: CellSpec, options: TuneOptions) -> None:
        try:
            self.result = self._run_search(spec, options, self._place)
            self._say(f"done: the result is in <code>{html.escape(options.out)}</code>")
        except TuneUsageError as exc:  # SearchFailed too: the dashboard above shows the failed trials
            self._say(str(exc), error=True)
        except Exception as exc:
            self._say(f"{type(exc).__name__}: {exc}", error=True)
        finally:
            self.start_button.disabled = False

    def _place(self, dashboard: Any) -> None:
        self.slot.children = (dashboard,)

    def _say(self, text: str, error: bool = False) -> None:
        if error:
            text = f'<span style="color:#c62828">{html.escape(text)}</span>'
        self.message.value = text
