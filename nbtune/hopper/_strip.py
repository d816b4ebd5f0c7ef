"""The schedule as a Gantt-like strip: which model is on which worker, over time and now (for the dashboard)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nbtune.hopper._schedule import Visit

_MARKS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def now_on(visits: list[Visit]) -> dict[int, int]:
    """Worker -> the model training on it right now."""
    return {v.worker: v.model for v in visits if v.status == "running"}


def strip(visits: list[Visit], workers: int, now: float, width: int = 60) -> list[str]:
    """One line per worker: the model on it in each of `width` time cells (its number; `.` idle, `x` lost hop).

    Models are numbered in order of arrival (0, 1, ... then letters), as the dashboard's trial numbers are.
    """
    if not visits:
        return [f"w{w} " + "." * width for w in range(workers)]
    start = min(v.start for v in visits)
    span = max(now - start, 1e-9)
    order = {model: i for i, model in enumerate(dict.fromkeys(v.model for v in sorted(visits, key=lambda v: v.start)))}
    rows = [["."] * width for _ in range(workers)]
    for v in visits:
        first = int((v.start - start) / span * width)
        last = int(((v.end if v.end is not None else now) - start) / span * width)
        mark = "x" if v.status == "lost" else _MARKS[order[v.model] % len(_MARKS)]
        for cell in range(max(0, first), min(width, max(last, first + 1))):
            rows[v.worker][cell] = mark
    return [f"w{w} " + "".join(row) for w, row in enumerate(rows)]


@dataclass(frozen=True)
class Bar:
    """One visit as the dashboard draws it: seconds since the search's first hop, and the trial's number."""

    worker: int
    trial: int | None  # the dashboard's trial number (None: not known yet)
    start: float
    end: float
    status: str  # "running", "done" or "lost"


def bars(visits: list[Visit], numbers: Mapping[int, int], now: float) -> list[Bar]:
    """The visits so far, a running one up to `now`; `numbers` maps a model (the trial's tid) to its number."""
    if not visits:
        return []
    start = min(v.start for v in visits)
    return [
        Bar(v.worker, numbers.get(v.model), v.start - start, (now if v.end is None else v.end) - start, v.status)
        for v in visits
    ]
