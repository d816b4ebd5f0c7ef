"""The dashboard's plots, drawn with matplotlib's object API (no pyplot state) into PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from typing import Any

from nbtune._text import is_finite_number
from nbtune.trial._records import TrialRecord

SIZE = (4.0, 2.6)  # inches; at DPI this is a 320 x 208 px image
DPI = 80
_OK, _BEST = "#1f77b4", "#2e7d32"
_STATUSES = {"ok": "#7e57c2", "pruned": "#b39ddb", "failed": "#c62828", "cancelled": "#9e9e9e"}


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
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
        ax.set_ylabel("trials", fontsize=8)
        ax.tick_params(labelsize=7)

    return _figure(draw, size)


def metric_curve(records: Sequence[TrialRecord], metric: str, mode: str) -> bytes:
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
        ax.set_title(f"{metric} over trials", fontsize=9)
        ax.set_xlabel("trial", fontsize=8)
        ax.set_ylabel(metric, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)

    return _render(draw)


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


def _spans_decades(values: Sequence[Any]) -> bool:
    """Log-uniform parameters read better on a log axis."""
    positive = [v for v in values if v > 0]
    return len(positive) == len(values) > 1 and max(positive) / min(positive) >= 100
