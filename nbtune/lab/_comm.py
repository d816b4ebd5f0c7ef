"""The kernel side of nbtune's JupyterLab extension: a comm target and a search listener.

The extension opens a comm to target `nbtune` and sends requests (`{"request": ..., "id": n}`):
`hello` (this session's searches), `templates` (names, descriptions, texts) and `annotations`
(how nbtune reads a cell's `# tune:` comments, with the magic's own messages). Searches are
pushed to every open comm as `{"event": "search", "search": {...}}` while they run.
Outside a kernel (plain IPython, Databricks, scripts) nothing here is active.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

from nbtune import templates
from nbtune._events import Listener, SearchInfo
from nbtune._result import TuneResult
from nbtune.cell._read import read_cell
from nbtune.trial._records import TrialRecord

TARGET = "nbtune"
PROTOCOL = 1
_HISTORY = 50  # searches kept for a frontend that connects later


def _jsonable(value: Any) -> Any:
    """A JSON-safe form of a parameter or metric value (numpy scalars unwrapped, others repr'd)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return repr(value)
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return repr(value)


@dataclass
class _Search:
    """What the Tuning panel shows of one search."""

    id: int
    info: SearchInfo
    result: TuneResult
    started: float = field(default_factory=time.time)
    running: int = 0
    finished: bool = False

    def snapshot(self) -> dict[str, Any]:
        """The search as JSON for the panel."""
        result, counts = self.result, self.result.counts()
        best = result.best_trial
        return {
            "id": self.id,
            "name": self.info.name,
            "out": self.info.options.out,
            "metric": result.metric,
            "mode": result.mode,
            "status": result.stop_reason if self.finished else "running",
            "finished": self.finished,
            "done": len(result.records),
            "total": result.max_evals or self.info.options.max_evals,
            "running": max(0, self.running) if not self.finished else 0,
            **counts,
            "best": _jsonable(result.best_value),
            "best_params": {k: _jsonable(v) for k, v in result.best_params.items()},
            "backend": self.info.backend,
            "parallelism": self.info.parallelism,
            "mlflow_url": result.parent_url,
            "best_mlflow_url": best.mlflow_url if best else None,
            "started": self.started,
            "elapsed": result.wall_time if self.finished else time.time() - self.started,
        }


class LabSession:
    """The searches of this kernel session and the frontends listening to them."""

    def __init__(self) -> None:
        self.active = False
        self.comms: list[Any] = []
        self.searches: list[_Search] = []
        self._ids = itertools.count(1)

    def open(self, comm: Any, msg: dict[str, Any]) -> None:
        """Comm target callback: a frontend connected."""
        self.comms.append(comm)
        comm.on_msg(lambda m: comm.send(self.handle(m["content"]["data"])))
        comm.on_close(lambda _m: self.comms.remove(comm) if comm in self.comms else None)
        data = msg.get("content", {}).get("data") or {}
        comm.send(self.handle({"request": "hello", **data}))

    def handle(self, data: dict[str, Any]) -> dict[str, Any]:
        """Answer one request from the frontend."""
        request, rid = data.get("request"), data.get("id")
        try:
            body = self._answer(str(request), data)
        except Exception as exc:  # a bad request must never break the kernel
            return {"reply": request, "id": rid, "error": f"{type(exc).__name__}: {exc}"}
        return {"reply": request, "id": rid, **body}

    def _answer(self, request: str, data: dict[str, Any]) -> dict[str, Any]:
        if request == "hello":
            from nbtune import __version__

            return {"protocol": PROTOCOL, "version": __version__, "searches": [s.snapshot() for s in self.searches]}
        if request == "templates":
            return {
                "templates": [
                    {"name": n, "description": templates.describe(n), "text": templates.get(n)}
                    for n in templates.names()
                ]
            }
        if request == "annotations":
            return read_cell(str(data.get("source", "")))
        raise ValueError(f"unknown request {request!r}")

    def start(self, info: SearchInfo, result: TuneResult) -> _Search:
        """Record a new search and tell the frontends."""
        search = _Search(next(self._ids), info, result)
        self.searches = [*self.searches, search][-_HISTORY:]
        return search

    def broadcast(self, search: _Search) -> None:
        """Send a search's snapshot to every open comm."""
        message = {"event": "search", "search": search.snapshot()}
        for comm in list(self.comms):
            comm.send(message)


SESSION = LabSession()


def register(ipython: Any) -> bool:
    """Register the `nbtune` comm target in a kernel; a no-op (False) elsewhere."""
    manager = getattr(getattr(ipython, "kernel", None), "comm_manager", None)
    if manager is None:
        return False
    manager.register_target(TARGET, SESSION.open)
    SESSION.active = True
    return True


def active() -> bool:
    """Whether searches should be reported to JupyterLab (the comm target is registered)."""
    return SESSION.active


class LabListener(Listener):
    """Feeds the Tuning panel: a snapshot on start and end, throttled ones in between."""

    def __init__(self, session: LabSession | None = None, interval: float = 0.25) -> None:
        self._session = session or SESSION
        self._interval = interval
        self._search: _Search | None = None
        self._dirty = False
        self._last = 0.0

    def search_started(self, info: SearchInfo, result: TuneResult) -> None:
        """Register the search and show it at once."""
        self._search = self._session.start(info, result)
        self._send()

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        """One more trial in flight."""
        if self._search is not None:
            self._search.running += 1
            self._dirty = True

    def trial_finished(self, record: TrialRecord) -> None:
        """One trial fewer in flight; send if the last update is old enough."""
        if self._search is not None:
            self._search.running -= 1
            self._dirty = True
            self.poll()

    def poll(self) -> None:
        """Send pending changes at most every `interval` seconds."""
        if self._dirty and time.monotonic() - self._last >= self._interval:
            self._send()

    def search_finished(self, result: TuneResult) -> None:
        """Send the final state."""
        if self._search is not None:
            self._search.finished = True
            self._send()

    def _send(self) -> None:
        if self._search is not None:
            self._session.broadcast(self._search)
        self._dirty, self._last = False, time.monotonic()
