"""The payload's large buffers in shared memory, for workers on the driver's machine (local mode).

Written once, in a background thread that runs while the pool's Spark tasks start; each worker
then maps the buffers instead of receiving its own copy over the socket, so every worker has its
data at once rather than each waiting for hundreds of MB to stream through loopback and Python.
The memory is an anonymous file (memfd) held open by this process: it goes when the pool closes,
or with the process, and can never be left behind on disk or in /dev/shm.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import secrets
import threading

from nbtune.trial._payload import Packed, Shared

MIN_BYTES = 8 << 20  # below this a buffer is sent on the socket: mapping it would save nothing
_WAIT = 30.0  # seconds a worker's thread waits for the copy before falling back to the socket


class SharedPayload:
    """A packed payload's large buffers, copied once into shared memory that same-machine workers map."""

    def __init__(self, packed: Packed) -> None:
        self._packed = packed
        self._fd: int | None = None
        self._offer: Shared | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._write, name="nbtune-shared-payload", daemon=True).start()

    @staticmethod
    def worth_it(packed: Packed) -> bool:
        """True where shared memory can help: Linux, and a buffer large enough to matter."""
        return hasattr(os, "memfd_create") and any(b.nbytes >= MIN_BYTES for b in packed.buffers)

    def offer(self) -> Shared | None:
        """What to offer a worker on this machine, once written; None if it could not be."""
        self._ready.wait(_WAIT)
        return self._offer

    def _write(self) -> None:
        fd: int | None = None
        try:
            token = secrets.token_bytes(16)
            offsets: list[int | None] = []
            end = mmap.PAGESIZE  # the token has the first page; each buffer starts on a page of its own
            for buffer in self._packed.buffers:
                if buffer.nbytes < MIN_BYTES:
                    offsets.append(None)
                    continue
                offsets.append(end)
                end += -(-buffer.nbytes // mmap.PAGESIZE) * mmap.PAGESIZE
            fd = os.memfd_create("nbtune-payload", os.MFD_CLOEXEC)
            os.ftruncate(fd, end)
            os.pwrite(fd, token, 0)
            for buffer, offset in zip(self._packed.buffers, offsets, strict=True):
                if offset is not None and not self._closed:
                    _write_all(fd, buffer, offset)
            with self._lock:
                if not self._closed:  # else close() came first: the memory goes now
                    self._fd, fd = fd, None
                    self._offer = Shared(os.getpid(), self._fd, token, tuple(offsets))
        except OSError:  # no memfd, or no memory for it: every worker gets its copy on the socket
            pass
        finally:
            if fd is not None:
                os.close(fd)
            self._ready.set()

    def close(self) -> None:
        """Free the memory (mappings workers already hold stay valid)."""
        with self._lock:
            self._closed = True
            fd, self._fd, self._offer = self._fd, None, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(fd: int, buffer: memoryview, offset: int) -> None:
    view = buffer.cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)
