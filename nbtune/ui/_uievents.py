"""Let widget clicks (the Cancel button) reach the kernel while a `%%tune` cell is still running.

A kernel handles one shell message at a time, so a click sent while a cell runs waits
until the cell ends. Three front-end/kernel combinations need three answers:

- JupyterLab with ipykernel >= 7 sends widget messages to a kernel *subshell* (its "comms
  over subshells" setting, on by default in 4.6), which runs them on its own thread: clicks
  arrive by themselves, nothing to do.
- ipykernel 6 keeps `do_one_iteration()`: `jupyter_ui_poll.ui_events()` runs pending
  messages from inside the cell (and defers new cells until this one ends).
- ipykernel 7 without subshells (VS Code, Notebook, nbclient): `do_one_iteration()` is
  gone, so pending comm messages are read from the main shell's inbox here and handled at
  once; anything else read on the way is handed back to the kernel, in order, to run after
  the cell.

Outside a kernel (terminal IPython, scripts, pytest) and off the main thread this is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

from nbtune.ui._kernel import current_kernel

_log = logging.getLogger(__name__)
_deferred: set[asyncio.Future[Any]] = set()  # shell messages handed back to the kernel, until they ran


class UiEvents:
    """Process pending widget messages on each `poll()` while a cell runs; no-op elsewhere."""

    def __init__(self) -> None:
        self._poll: Callable[[int], Any] | None = None
        self._close: Callable[[], Any] | None = None

    @property
    def active(self) -> bool:
        """Whether polling does anything here."""
        return self._poll is not None

    def start(self) -> None:
        """Begin processing UI events (only inside a cell executing on the kernel's main thread)."""
        try:
            opened = _open()
        except Exception:  # a kernel we do not know: the search goes on without live clicks
            _log.debug("nbtune: cannot process UI events here", exc_info=True)
            opened = None
        if opened is not None:
            self._poll, self._close = opened

    def poll(self, n: int = 10) -> None:
        """Handle up to `n` pending UI events."""
        if self._poll is None:
            return
        try:
            self._poll(n)
        except Exception:
            _log.debug("nbtune: UI event polling stopped", exc_info=True)
            self.stop()

    def stop(self) -> None:
        """Stop processing UI events; safe to call twice."""
        close, self._poll, self._close = self._close, None, None
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _open() -> tuple[Callable[[int], Any], Callable[[], Any]] | None:
    kernel = current_kernel()
    if kernel is None or threading.current_thread() is not threading.main_thread():
        return None
    parent = kernel.get_parent("shell") or {}
    if parent.get("header", {}).get("msg_type") != "execute_request":
        return None  # e.g. a button callback: the kernel is not inside a cell
    if hasattr(kernel, "do_one_iteration"):  # ipykernel 6
        from jupyter_ui_poll import ui_events

        context = ui_events()
        poll = context.__enter__()
        return poll, lambda: context.__exit__(None, None, None)
    manager = getattr(getattr(kernel, "shell_channel_thread", None), "manager", None)
    if manager is None or not hasattr(manager, "get_shell_channel_to_subshell_pair"):
        return None
    pump = _CommPump(kernel, manager.get_shell_channel_to_subshell_pair(None).to_socket)
    return pump.poll, pump.close


class _CommPump:
    """Read the main shell's pending messages (ipykernel 7); run comm messages now, defer the rest."""

    def __init__(self, kernel: Any, socket: Any) -> None:
        self._kernel = kernel
        self._socket = socket

    def poll(self, n: int) -> None:
        import zmq

        kernel = self._kernel
        for _ in range(n):
            try:
                frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            idents, rest = kernel.session.feed_identities(frames, copy=False)
            # Header only: a full deserialize records the signature, and the kernel would
            # then refuse a deferred message as a replay.
            header = kernel.session.deserialize(rest, content=False, copy=False)["header"]
            if header.get("msg_type") == "comm_msg":
                self._handle_comm(idents, kernel.session.deserialize(rest, content=True, copy=False))
            else:
                # The cell still holds the kernel's lock: this waits for it, in arrival order.
                task = asyncio.ensure_future(kernel.shell_main(None, frames))
                _deferred.add(task)  # asyncio keeps only weak references to tasks
                task.add_done_callback(_deferred.discard)

    def _handle_comm(self, idents: Any, msg: dict[str, Any]) -> None:
        kernel = self._kernel
        ident, parent = kernel._parent_ident["shell"], kernel.get_parent("shell")
        kernel.set_parent(idents, msg, channel="shell")
        try:
            kernel.shell_handlers["comm_msg"](None, idents, msg)
        except Exception:
            _log.warning("nbtune: a widget message failed", exc_info=True)
        finally:
            kernel.set_parent(ident, parent, channel="shell")  # outputs go back to the running cell

    def close(self) -> None:
        """Nothing to release: deferred messages run when the cell ends."""
