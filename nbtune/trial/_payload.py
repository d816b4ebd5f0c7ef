"""Ship a picklable object over a connection without copying its large buffers.

Pickle protocol 5 moves numpy arrays and other large buffers out of band: the driver sends
them straight from memory, and the worker receives each into a writable bytearray that the
unpickled arrays then use in place. A 188 MB array costs one transfer, not three copies.

A buffer may also carry a key (a hash of its content, see `nbtune.pool`): the first send to a
worker transfers it and the worker keeps it (up to `Held.limit` bytes); later sends name it only.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

KeyFn = Callable[[memoryview], "str | None"]  # a buffer -> its cache key, or None to always send it


@dataclass
class Packed:
    """A pickle and its out-of-band buffers, ready to send to any number of workers."""

    main: bytes
    buffers: list[memoryview]
    keys: list[str | None] = field(default_factory=list)  # per buffer; empty: no buffer is cached

    @property
    def size(self) -> int:
        """Bytes on the wire for one worker."""
        return len(self.main) + sum(b.nbytes for b in self.buffers)


def pack(obj: Any, key: KeyFn | None = None) -> Packed:
    """Pickle once, leaving large buffers out of band (no copy of their memory)."""
    buffers: list[memoryview] = []
    main = cloudpickle.dumps(obj, protocol=5, buffer_callback=lambda b: buffers.append(b.raw()))
    keys = [key(b) for b in buffers] if key is not None else []
    return Packed(main, buffers, keys)


@dataclass
class Held:
    """The keyed buffers one peer keeps: the sender decides (within `limit` bytes), so both ends agree."""

    keys: set[str] = field(default_factory=set)
    nbytes: int = 0
    limit: int = 1 << 30  # past this (per worker), buffers are sent each time rather than kept

    def keep(self, key: str | None, size: int) -> bool:
        """Whether the peer should keep this buffer (noting that it will)."""
        if key is None or self.nbytes + size > self.limit:
            return False
        self.keys.add(key)
        self.nbytes += size
        return True


def send(conn: Connection, packed: Packed, held: Held | None = None) -> int:
    """Send a packed object: a header, the pickle, then each buffer the peer lacks; the bytes sent.

    With `held`, keyed buffers the peer keeps are sent once: later sends name them only.
    """
    keys = packed.keys or [None] * len(packed.buffers)
    skip = [held is not None and k is not None and k in held.keys for k in keys]
    store = [
        k if held is not None and not skipped and held.keep(k, b.nbytes) else None
        for k, b, skipped in zip(keys, packed.buffers, skip, strict=True)
    ]
    named = [k if skipped else s for k, s, skipped in zip(keys, store, skip, strict=True)]
    conn.send((len(packed.main), [b.nbytes for b in packed.buffers], named, skip))
    conn.send_bytes(packed.main)
    sent = len(packed.main)
    for buffer, skipped in zip(packed.buffers, skip, strict=True):
        if not skipped:
            conn.send_bytes(buffer)
            sent += buffer.nbytes
    return sent


def receive(conn: Connection, cache: MutableMapping[str, Any] | None = None) -> Any:
    """Receive and unpickle what send() sent; arrays come back writable, cached ones read-only.

    `cache` holds this end's keyed buffers (shared by later objects, hence read-only, as joblib
    hands large arrays to its workers).
    """
    return load(receive_raw(conn, cache))


def load(raw: tuple[bytes, list[Any]]) -> Any:
    """Unpickle what receive_raw() received."""
    main, buffers = raw
    return cloudpickle.loads(main, buffers=buffers)


def receive_raw(conn: Connection, cache: MutableMapping[str, Any] | None = None) -> tuple[bytes, list[Any]]:
    """Receive what send() sent without unpickling it: the pickle and its buffers."""
    _, sizes, keys, skip = conn.recv()
    main = conn.recv_bytes()
    store = cache if cache is not None else {}
    buffers: list[Any] = []
    for size, key, skipped in zip(sizes, keys, skip, strict=True):
        if skipped:
            buffers.append(store[key])
            continue
        buffer = bytearray(size)
        if size:
            conn.recv_bytes_into(buffer)
        else:
            conn.recv_bytes()
        if key is not None:
            view = memoryview(buffer).toreadonly()
            store[key] = view
            buffers.append(view)
        else:
            buffers.append(buffer)
    return main, buffers
