"""The dashboard's plots, drawn with matplotlib's object API (no pyplot state) into PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbtune._text import is_finite_number
from nbtune.trial._records import Curve, TrialRecord

if TYPE_CHECKING:
    from nbtune.hopper._strip import Bar

SIZE = (4.0, 2.6)  # inches; at DPI this is a 320 x 208 px image
DPI = 80
_OK, _BEST = "#1f77b4", "#2e7d32"
_STATUSES = {"ok": "#7e57c2", "pruned": "#b39ddb", "failed": "#c62828", "cancelled": "#9e9e9e"}
# Learning curves by kind, in legend order: (colour, alpha, line width, z-order). The best trial on
# top, running trials bright, finished ones quieter, pruned and stopped ones faded behind them.
_CURVE_STYLES: dict[str, tuple[str, float, float, int]] = {
    "best": (_BEST, 1.0, 2.2, 6),
    "running": ("#ef6c00", 0.9, 1.4, 5),
    "ok": (_OK, 0.55, 1.0, 4),
    "pruned": ("#9575cd", 0.3, 0.8, 3),
    "failed": (_STATUSES["failed"], 0.25, 0.8, 2),
    "cancelled": (_STATUSES["cancelled"], 0.25, 0.8, 1),
}

Point = tuple[int, float]  # (step, value of the metric)


@dataclass(frozen=True)
class CurveLine:
    """One trial's metric over its steps, as the learning-curves plot draws it."""

    number: int
    kind: str  # "best", "running", or the finished trial's status
    points: tuple[Point, ...]


def _render(draw: Callable[[Any], None], size: tuple[float, float] = SIZE) -> bytes:
    return png(_figure(draw, size))


def _figure(draw: Callable[[Any], None], size: tuple[float, float] = SIZE) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    draw(fig)
    return fig


def png(fig: Any, dpi: float | None = None) -> bytes:
    """A figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def durations(records: Sequence[TrialRecord], title: str = "trial durations", size: tuple[float, float] = SIZE) -> Any:
    """How long trials took, ok, failed and cancelled stacked: the dashboard's plot and the MLflow artifact."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        groups = [(s, [r.duration for r in records if r.status == s]) for s in _STATUSES]
        kept = [(s, g) for s, g in groups if g]
        if kept:
            bins = max(5, min(30, len(records) // 3))
            colors = [_STATUSES[s] for s, _ in kept]
            ax.hist(
                [g for _, g in kept], bins=bins, stacked=True, color=colors, label=[f"{s} ({len(g)})" for s, g in kept]
            )
            if len(kept) > 1:
                ax.legend(fontsize=7)
        _label(ax, title, "seconds", "trials")

    return _figure(draw, size)


def metric_curve(records: Sequence[TrialRecord], metric: str, mode: str) -> bytes:
    """The dashboard's history plot, as PNG bytes."""
    return png(history(records, metric, mode))


def history(records: Sequence[TrialRecord], metric: str, mode: str, size: tuple[float, float] = SIZE) -> Any:
    """The metric of every ok trial over trial numbers, with the best-so-far line."""
    ok = sorted((r for r in records if r.status == "ok" and r.value is not None), key=lambda r: r.number)
    xs = [r.number for r in ok]
    ys = [float(r.value or 0.0) for r in ok]
    pick = min if mode == "min" else max
    best: list[float] = []
    for y in ys:
        best.append(y if not best else pick(best[-1], y))

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        ax.scatter(xs, ys, s=10, color=_OK, label="trial")
        ax.step(xs, best, where="post", color=_BEST, label="best so far")
        _label(ax, f"{metric} over trials", "trial", metric)
        ax.legend(fontsize=7)

    return _figure(draw, size)


def param_plot(records: Sequence[TrialRecord], names: Sequence[str], metric: str) -> bytes:
    """The metric against each of one or two parameters (numbers on a scatter, choices as categories)."""
    ok = [r for r in records if r.status == "ok" and r.value is not None]

    def draw(fig: Any) -> None:
        axes = fig.subplots(1, len(names), squeeze=False, sharey=True)[0]
        for ax, name in zip(axes, names, strict=True):
            values = [r.params.get(name) for r in ok]
            ys = [float(r.value or 0.0) for r in ok]
            if all(is_finite_number(v) for v in values):
                ax.scatter(values, ys, s=10, color=_OK)
                if _spans_decades(values):
                    ax.set_xscale("log")
            else:
                labels = sorted({repr(v) for v in values})
                where = {label: i for i, label in enumerate(labels)}
                ax.scatter([where[repr(v)] for v in values], ys, s=10, color=_OK)
                ax.set_xticks(range(len(labels)), labels, fontsize=7)
            ax.set_xlabel(name, fontsize=8)
            ax.tick_params(labelsize=7)
        axes[0].set_ylabel(metric, fontsize=8)
        fig.suptitle(f"{metric} by parameter", fontsize=9)

    return _render(draw, (SIZE[0] * (1 + 0.5 * (len(names) - 1)), SIZE[1]))


def metric_points(curve: Curve, metric: str) -> list[Point]:
    """(step, value) of each report that carried `metric` as a finite number."""
    return [(step, float(m[metric])) for step, m in curve if is_finite_number(m.get(metric))]


def curve_lines(
    records: Sequence[TrialRecord], running: Mapping[int, Sequence[Point]], best: TrialRecord | None, metric: str
) -> list[CurveLine]:
    """The lines of the learning-curves plot: finished trials' curves, then running trials' reports so far."""
    lines = []
    for r in records:
        points = metric_points(r.curve, metric)
        if points:
            lines.append(CurveLine(r.number, "best" if r is best else r.status, tuple(points)))
    lines += [CurveLine(n, "running", tuple(p)) for n, p in sorted(running.items()) if p]
    return lines


def learning_curves(lines: Sequence[CurveLine], metric: str) -> bytes:
    """The metric against step, one line a trial: the best highlighted, running ones bright, pruned faded."""

    def draw(fig: Any) -> None:
        from matplotlib.collections import LineCollection
        from matplotlib.ticker import MaxNLocator

        ax = fig.add_subplot()
        for kind, (color, alpha, width, z) in _CURVE_STYLES.items():
            group = [line for line in lines if line.kind == kind]
            if not group:
                continue
            label = f"best (trial {group[0].number})" if kind == "best" else f"{kind} ({len(group)})"
            # One collection per kind: a thousand trials' curves draw as fast as a few.
            segments = [list(line.points) for line in group]
            style: dict[str, Any] = {"color": color, "alpha": alpha, "zorder": z}
            ax.add_collection(LineCollection(segments, linewidths=width, label=label, **style))
            # Where each curve ends: a pruned trial's prune step, a running trial's latest report,
            # and visible even for a curve of a single report.
            ends = [line.points[-1] for line in group]
            marker = "x" if kind == "pruned" else "o"
            ax.scatter([e[0] for e in ends], [e[1] for e in ends], s=10, marker=marker, **style)
        ax.autoscale_view()
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        _label(ax, f"{metric} by step", "step", metric)
        ax.legend(fontsize=7)

    return _render(draw)


def placement(workers: int, bars: Sequence[Bar]) -> bytes:
    """The hopper's Gantt-like strip: one row a worker, a bar for each trial's sub-epoch there, numbered."""

    def draw(fig: Any) -> None:
        from matplotlib import colormaps
        from matplotlib.collections import PolyCollection

        ax = fig.add_subplot()
        colors = colormaps["tab20"]
        end = max((b.end for b in bars), default=1.0) or 1.0
        boxes, faces = [], []
        for b in bars:
            x0, x1, y0, y1 = b.start, max(b.end, b.start + end / 400), b.worker - 0.4, b.worker + 0.4
            boxes.append([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
            lost = b.status == "lost" or b.trial is None
            faces.append("#bdbdbd" if lost else colors((b.trial or 0) % colors.N))
            if b.end - b.start > end / 25 and b.trial is not None:  # a number only where it fits
                ax.text((b.start + b.end) / 2, b.worker, str(b.trial), ha="center", va="center", fontsize=7)
        # One collection: hundreds of sub-epochs draw as fast as a few.
        ax.add_collection(PolyCollection(boxes, facecolors=faces, edgecolors="white", linewidths=0.5))
        ax.set_xlim(0, end)
        ax.set_ylim(workers - 0.5, -0.5)  # worker 0 on top
        ax.set_yticks(range(workers), [f"worker {w}" for w in range(workers)])
        _label(ax, "which trial trains on which worker", "seconds", "")

    return _render(draw)


def _label(ax: Any, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)


def _spans_decades(values: Sequence[Any]) -> bool:
    """Log-uniform parameters read better on a log axis."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) >= 100
