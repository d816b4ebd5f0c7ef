"""Content keys of large buffers, so a worker receives each array once however many tasks use it."""

from __future__ import annotations

import hashlib
import threading
import weakref
from typing import Any

MIN_CACHED = 1 << 20  # buffers from 1 MB up are sent once per worker; smaller ones travel with their task


class BufferKeys:
    """A buffer -> a hash of its content (None below MIN_CACHED), each array hashed once until forget()."""

    def __init__(self, min_size: int = MIN_CACHED) -> None:
        self.min_size = min_size
        self._memo: dict[tuple[int, int], tuple[weakref.ref[Any], str]] = {}
        self._lock = threading.Lock()  # batches are packed on the caller's and joblib's threads

    def __call__(self, buffer: memoryview) -> str | None:
        if buffer.nbytes < self.min_size:
            return None
        owner = buffer.obj
        memo = (id(owner), buffer.nbytes)
        with self._lock:
            known = self._memo.get(memo)
        if known is not None and known[0]() is owner:
            return known[1]
        key = hashlib.blake2b(buffer, digest_size=16).hexdigest()
        try:
            ref = weakref.ref(owner)
        except TypeError:  # bytes and bytearray take no weak reference: hash them each time
            return key
        with self._lock:
            self._memo[memo] = (ref, key)
        return key

    def forget(self) -> None:
        """Hash again from now on: the caller may have changed its arrays in place since."""
        with self._lock:
            self._memo.clear()
