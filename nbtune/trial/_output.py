"""Capture a trial's stdout and stderr, also when several trials run at once on threads of one process.

`contextlib.redirect_stdout` swaps the process-wide `sys.stdout`: two trials on two threads would
write into each other's buffers and could leave the notebook's stream swapped for good. While
`thread_routing()` is on (the driver backend), `sys.stdout`/`sys.stderr` are routers that send each
thread's writes to that thread's buffer, and `capture_output` only sets the calling thread's buffer.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import IO, Any

_local = threading.local()
_routing_lock = threading.Lock()
_routing_depth = 0


class _Router:
    """A text stream that writes to the calling thread's trial buffer, else to the original stream."""

    def __init__(self, original: IO[str], which: str) -> None:
        self.original, self._which = original, which

    def _target(self) -> IO[str]:
        target: IO[str] | None = getattr(_local, self._which, None)
        return target if target is not None else self.original

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # isatty, encoding, fileno...: the original stream's
        return getattr(self.original, name)


@contextlib.contextmanager
def thread_routing() -> Iterator[None]:
    """Route sys.stdout/sys.stderr per thread while the block runs (nestable, thread-safe)."""
    global _routing_depth
    with _routing_lock:
        if _routing_depth == 0:
            sys.stdout = _Router(sys.stdout, "stdout")
            sys.stderr = _Router(sys.stderr, "stderr")
        _routing_depth += 1
    try:
        yield
    finally:
        with _routing_lock:
            _routing_depth -= 1
            if _routing_depth == 0:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if isinstance(stream, _Router):
                        setattr(sys, name, stream.original)


@contextlib.contextmanager
def capture_output(buffer: IO[str]) -> Iterator[None]:
    """Send this trial's stdout and stderr to `buffer` (per thread under thread_routing, else process-wide)."""
    if isinstance(sys.stdout, _Router):
        saved = getattr(_local, "stdout", None), getattr(_local, "stderr", None)
        _local.stdout = _local.stderr = buffer
        try:
            yield
        finally:
            _local.stdout, _local.stderr = saved
        return
    with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
        yield
