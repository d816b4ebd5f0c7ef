"""The groups' way back to the driver: each task sends a group's start and result as they happen.

Spark returns a job's rows only when the whole job ends; this channel lets the driver show progress
and keep every finished group when the job is cancelled. The tasks' returned rows stay the fallback
for a worker that cannot reach the driver.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from multiprocessing.connection import Client, Connection, Listener
from typing import Any


class GroupChannel:
    """The driver's end: an authenticated listener whose messages land on `messages`."""

    def __init__(self, host: str) -> None:
        self.secret = os.urandom(32)
        self._listener = Listener((host, 0), authkey=self.secret)  # HMAC challenge both ways
        self.address: tuple[str, int] = self._listener.address
        self.messages: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._conns: list[Connection] = []
        threading.Thread(target=self._accept, name="nbtune-groups-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn = self._listener.accept()
            except Exception:  # closed, or a peer that failed the challenge
                if self._closed.is_set():
                    return
                continue
            self._conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), name="nbtune-groups-read", daemon=True).start()

    def _read(self, conn: Connection) -> None:
        # Ends with the task (EOF) or with close() from the driver, which a blocked recv sees as any error.
        with contextlib.suppress(Exception):
            while True:
                self.messages.put(conn.recv())

    def drain(self) -> list[tuple[Any, ...]]:
        """Every message that arrived since the last drain."""
        out = []
        with contextlib.suppress(queue.Empty):
            while True:
                out.append(self.messages.get_nowait())
        return out

    def close(self) -> None:
        """Stop listening and hang up on every task."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


def connect(address: tuple[str, int], secret: bytes) -> Connection | None:
    """A task's end, or None when the driver cannot be reached (the job's rows then carry the results)."""
    try:
        return Client(address, authkey=secret)
    except (OSError, EOFError, ValueError):
        return None


def send(conn: Connection | None, message: tuple[Any, ...]) -> Connection | None:
    """Send if connected; a broken channel is dropped, never fatal to the group."""
    if conn is None:
        return None
    try:
        conn.send(message)
        return conn
    except (OSError, EOFError, ValueError):
        with contextlib.suppress(OSError):
            conn.close()
        return None
