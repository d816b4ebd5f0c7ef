"""A single self-updating text line for terminals, scripts and `make demo`."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from nbtune._events import Listener, SearchInfo
from nbtune._result import TuneResult
from nbtune.trial._records import TrialRecord


class TextProgress(Listener):
    """`[#####.....] 12/32  ok 11  failed 1  best val_loss=0.312  00:41` redrawn in place."""

    def __init__(self, stream: TextIO | None = None, interval: float = 0.5) -> None:
        self._stream = stream or sys.stdout
        self._interval = interval
        self._last = 0.0
        self._dirty = False
        self._result: TuneResult | None = None
        self._total = 0
        self._start = time.monotonic()

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """Remember what to draw."""
        self._result, self._total, self._start = result, info.options.max_evals, time.monotonic()
        self._draw()

    def trial_finished(self, record: TrialRecord) -> None:
        """Redraw soon."""
        self._dirty = True
        self.poll()

    def poll(self) -> None:
        """Redraw at most every `interval` seconds."""
        if self._dirty and time.monotonic() - self._last >= self._interval:
            self._draw()

    def search_finished(self, result: TuneResult) -> None:
        """Draw the exact final line, then the summary."""
        self._draw()
        self._stream.write("\n" + result.summary() + "\n")
        self._stream.flush()

    def _draw(self) -> None:
        result = self._result
        if result is None:
            return
        done, c = len(result.records), result.counts()
        width = 20
        filled = int(width * done / self._total) if self._total else width
        parts = [f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self._total}", f"ok {c['ok']}"]
        if c["pruned"]:
            parts.append(f"pruned {c['pruned']}")
        if c["failed"]:
            parts.append(f"failed {c['failed']}")
        if c["cancelled"]:
            parts.append(f"cancelled {c['cancelled']}")
        if result.best_value is not None:
            parts.append(f"best {result.metric}={result.best_value:.4g}")
        elapsed = int(time.monotonic() - self._start)
        parts.append(f"{elapsed // 60:02d}:{elapsed % 60:02d}")
        self._stream.write("\r" + "  ".join(parts) + " ")
        self._stream.flush()
        self._last, self._dirty = time.monotonic(), False
