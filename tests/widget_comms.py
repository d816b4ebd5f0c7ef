"""A comm that records what widgets send, as ipywidgets' own tests do, plus the front end's view of it."""

from __future__ import annotations

import uuid
from typing import Any

import comm
import pytest


class RecordingComm:
    """Stands in for the kernel's comm: keeps every message a widget sends, delivers front-end messages."""

    kernel = "recording"  # ipywidgets sends only through a comm that has a kernel

    def __init__(self, log: list[tuple[str, dict[str, Any], list[bytes]]], **kwargs: Any) -> None:
        self.comm_id = kwargs.get("comm_id") or uuid.uuid4().hex
        self._log = log
        self._handler: Any = None
        data = kwargs.get("data") or {}
        log.append((self.comm_id, {"method": "open", **data}, list(kwargs.get("buffers") or [])))

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, callback: Any) -> None:
        self._handler = callback

    def send(self, data: Any = None, buffers: Any = None, **kwargs: Any) -> None:
        self._log.append((self.comm_id, data, list(buffers or [])))

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def deliver(self, data: dict[str, Any]) -> None:
        """A message from the front end, e.g. a button click."""
        self._handler({"content": {"comm_id": self.comm_id, "data": data}, "buffers": []})


class Comms:
    """Every comm opened during a test and every message sent on them."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, dict[str, Any], list[bytes]]] = []
        self.comms: dict[str, RecordingComm] = {}

    def create(self, **kwargs: Any) -> RecordingComm:
        c = RecordingComm(self.messages, **kwargs)
        self.comms[c.comm_id] = c
        return c

    def updates(self) -> list[tuple[str, dict[str, Any], list[bytes]]]:
        """State updates sent after the widgets were opened."""
        return [m for m in self.messages if m[1].get("method") == "update"]

    def frontend_state(self, widget: Any) -> dict[str, Any]:
        """The widget's state as a front end that received every message would hold it."""
        state: dict[str, Any] = {}
        for comm_id, data, buffers in self.messages:
            if comm_id != widget.model_id or data.get("method") not in ("open", "update"):
                continue
            state.update(data.get("state", {}))
            for path, buf in zip(data.get("buffer_paths", []), buffers, strict=False):
                state[path[0]] = bytes(buf)
        return state

    def click(self, button: Any) -> None:
        """Deliver a click from the front end to a Button."""
        self.comms[button.model_id].deliver({"method": "custom", "content": {"event": "click"}})


def record_comms(monkeypatch: pytest.MonkeyPatch) -> Comms:
    """From now on in this test, widgets talk to recording comms."""
    recorder = Comms()
    monkeypatch.setattr(comm, "create_comm", recorder.create)
    return recorder
