"""What a search teaches, drawn: parallel coordinates and parameter importance (matplotlib Figures)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from nbtune._text import is_finite_number
from nbtune.trial._records import TrialRecord
from nbtune.ui._plots import SIZE, _figure, _spans_decades

_WIDE = (SIZE[0] * 1.6, SIZE[1] * 1.2)


def parallel_coordinates(
    records: Sequence[TrialRecord], names: Sequence[str], metric: str, mode: str, size: tuple[float, float] = _WIDE
) -> Any:
    """One line per ok trial across the parameters to the metric, coloured by the metric, the best on top.

    Each axis spans its parameter's values (log-scaled when they span decades); choices are spread
    evenly along their axis and labelled.
    """
    ok = [r for r in records if r.status == "ok" and is_finite_number(r.value)]
    axes = [*names, metric]
    columns = [_axis([r.params.get(n) for r in ok]) for n in names]
    columns.append(_axis([r.value for r in ok]))
    sign = 1.0 if mode == "min" else -1.0
    best = min(ok, key=lambda r: sign * float(r.value or 0.0), default=None)

    def draw(fig: Any) -> None:
        from matplotlib import colormaps
        from matplotlib.colors import Normalize

        ax = fig.add_subplot()
        values = [float(r.value or 0.0) for r in ok]
        norm = Normalize(min(values, default=0.0), max(values, default=1.0))
        cmap = colormaps["viridis_r" if mode == "min" else "viridis"]  # the good end is yellow either way
        from matplotlib.collections import LineCollection

        xs = list(range(len(axes)))
        lines, colors = [], []
        for i, record in enumerate(ok):
            ys = [col.positions[i] for col in columns]
            if record is best:
                ax.plot(xs, ys, color="#d32f2f", linewidth=2.4, zorder=5, label=f"best (trial {record.number})")
            else:
                lines.append(list(zip(xs, ys, strict=True)))
                colors.append(cmap(norm(values[i])))
        # One artist for all the other trials: 10,000 separate lines took seconds to build and draw.
        ax.add_collection(LineCollection(lines, colors=colors, linewidths=1.0, alpha=0.7))
        for x, col in zip(xs, columns, strict=True):
            ax.axvline(x, color="#616161", linewidth=0.8, zorder=0)
            for position, label in col.ticks:
                ax.annotate(label, (x, position), xytext=(3, 0), textcoords="offset points", fontsize=6, va="center")
        ax.set_xticks(xs, axes, fontsize=8)
        ax.set_yticks([])
        ax.set_ylim(-0.05, 1.05)
        ax.set_xlim(-0.1, len(axes) - 0.6)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"{len(ok)} trials: parameters to {metric}", fontsize=9)
        if best is not None:
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(0, -0.08), frameon=False)
        from matplotlib.cm import ScalarMappable

        fig.colorbar(ScalarMappable(norm, cmap), ax=ax, pad=0.01, fraction=0.03).ax.tick_params(labelsize=6)

    return _figure(draw, size)


def importance(table: Any, size: tuple[float, float] = SIZE) -> Any:
    """Horizontal bars of `importance()`'s table, the most important parameter on top."""

    def draw(fig: Any) -> None:
        ax = fig.add_subplot()
        rows = table.iloc[::-1]
        ax.barh(rows["parameter"], rows["importance"], xerr=rows["std"], color="#1f77b4", ecolor="#9e9e9e")
        ax.set_xlim(0, max(1.0, float((rows["importance"] + rows["std"]).max())))
        trials = table.attrs.get("trials")
        metric = table.attrs.get("metric", "the metric")
        ax.set_title(f"importance for {metric}" + (f" ({trials} trials)" if trials else ""), fontsize=9)
        ax.set_xlabel("share of the explained variation", fontsize=8)
        ax.tick_params(labelsize=7)

    return _figure(draw, size)


class _Axis:
    """Where each trial's value sits on one axis (0..1) and which labels to draw."""

    def __init__(self, positions: list[float], ticks: list[tuple[float, str]]) -> None:
        self.positions, self.ticks = positions, ticks


def _axis(values: Sequence[Any]) -> _Axis:
    if values and all(is_finite_number(v) for v in values):
        logs = _spans_decades(values)
        scaled = [math.log10(v) if logs else float(v) for v in values]
        lo, hi = min(scaled), max(scaled)
        span = (hi - lo) or 1.0
        return _Axis([(v - lo) / span for v in scaled], [(0.0, _short(min(values))), (1.0, _short(max(values)))])
    labels = sorted({repr(v) if not isinstance(v, str) else v for v in values})
    step = 1.0 / max(1, len(labels) - 1)
    where = {label: (i * step if len(labels) > 1 else 0.5) for i, label in enumerate(labels)}
    key = [repr(v) if not isinstance(v, str) else v for v in values]
    return _Axis([where[k] for k in key], [(where[label], label) for label in labels])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
