"""The live line of a search per group: groups done / running / failed / total, the ETA, the worst group."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nbtune._text import clock, fmt
from nbtune.groups._result import GroupsResult


class GroupProgress:
    """`[#####.....] groups 12/50  running 2  failed 1  worst rmse=0.91 (store 7)  ETA 00:31  00:12`."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.5) -> None:
        self._stream = stream or sys.stdout
        self._interval = interval
        self._last = 0.0
        self._start = time.monotonic()

    def update(self, result: GroupsResult, final: bool = False) -> None:
        """Redraw at most every `interval` seconds (always when final)."""
        now = time.monotonic()
        if not final and now - self._last < self._interval:
            return
        self._last = now
        self._stream.write("\r" + line(result, now - self._start) + " ")
        if final:
            self._stream.write("\n" + result.summary() + "\n")
        self._stream.flush()


def line(result: GroupsResult, elapsed: float) -> str:
    """The progress line for the groups as they stand."""
    c = result.group_counts()
    total = len(result.outcomes)
    done = c.get("ok", 0) + c.get("failed", 0)
    width = 20
    filled = int(width * done / total) if total else width
    parts = [f"[{'#' * filled}{'.' * (width - filled)}] groups {done}/{total}", f"running {c.get('running', 0)}"]
    if c.get("failed"):
        parts.append(f"failed {c['failed']}")
    if c.get("cancelled"):
        parts.append(f"cancelled {c['cancelled']}")
    values = result.best_values
    if values:
        sign = 1.0 if result.mode == "min" else -1.0
        key, worst = max(values.items(), key=lambda kv: sign * (kv[1] or 0.0))
        parts.append(f"worst {result.metric}={fmt(worst)} ({key})")
    if 0 < done < total:
        parts.append(f"ETA {clock(elapsed / done * (total - done))}")
    parts.append(clock(elapsed))
    return "  ".join(parts)
