"""Catch what native code writes to file descriptors 1 and 2 during a trial on a worker.

Python-level prints are captured by the objective itself; C/C++ libraries (TensorFlow's logs,
for instance) and child processes write straight to the process's descriptors, which on a
Spark worker end up in an executor log nobody reads.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass
class Captured:
    """The text native code wrote, filled in when the `native_output` block ends."""

    text: str = ""


@contextlib.contextmanager
def native_output(limit: int) -> Iterator[Captured]:
    """Point fds 1 and 2 at a temporary file for the block; keep the last `limit` bytes written there."""
    captured = Captured()
    with tempfile.TemporaryFile() as sink:
        _flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            _flush()  # C's stdio buffers what it writes to a file: out with it before the fds go back
            for fd, original in zip((1, 2), saved, strict=True):
                os.dup2(original, fd)
                os.close(original)
            size = sink.seek(0, os.SEEK_END)
            sink.seek(max(0, size - limit))
            captured.text = sink.read().decode(errors="replace")


def _flush() -> None:
    for stream in (sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).fflush(None)
