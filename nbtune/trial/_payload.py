"""Ship a picklable object over a connection without copying its large buffers.

Pickle protocol 5 moves numpy arrays and other large buffers out of band: the driver sends
them straight from memory, and the worker receives each into a writable bytearray that the
unpickled arrays then use in place. A 188 MB array costs one transfer, not three copies.

A buffer may also carry a key (a hash of its content, see `nbtune.pool`): the first send to a
worker transfers it and the worker keeps it (up to `Held.limit` bytes); later sends name it only.

A sender on the worker's machine may instead offer its buffers in shared memory (`Shared`, written
once by `nbtune.spark._shared`): the worker maps them copy-on-write and nothing crosses the socket.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import cloudpickle

KeyFn = Callable[[memoryview], "str | None"]  # a buffer -> its cache key, or None to always send it


@dataclass(frozen=True)
class Shared:
    """Where a sender's buffers wait in shared memory: a file descriptor of process `pid`, checked by `token`."""

    pid: int
    fd: int
    token: bytes  # the file's first bytes: proves the worker opened the right file
    offsets: tuple[int | None, ...]  # per buffer, its page-aligned offset in the file; None: sent on the socket


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


def send(conn: Connection, packed: Packed, held: Held | None = None, shared: Shared | None = None) -> int:
    """Send a packed object: a header, the pickle, then each buffer the peer lacks; the bytes sent.

    With `held`, keyed buffers the peer keeps are sent once: later sends name them only. With
    `shared`, the peer maps the buffers found there and answers whether it could; those it
    could not map are sent.
    """
    keys = packed.keys or [None] * len(packed.buffers)
    skip = [held is not None and k is not None and k in held.keys for k in keys]
    store = [
        k if held is not None and not skipped and held.keep(k, b.nbytes) else None
        for k, b, skipped in zip(keys, packed.buffers, skip, strict=True)
    ]
    named = [k if skipped else s for k, s, skipped in zip(keys, store, skip, strict=True)]
    conn.send((len(packed.main), [b.nbytes for b in packed.buffers], named, skip, shared))
    conn.send_bytes(packed.main)
    sent = len(packed.main)
    if shared is not None and conn.recv() is True:  # the peer mapped them
        skip = [skipped or offset is not None for skipped, offset in zip(skip, shared.offsets, strict=True)]
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
    header = conn.recv()
    sizes, keys, skip = header[1:4]
    main = conn.recv_bytes()
    offer: Shared | None = header[4] if len(header) > 4 else None
    mapped: list[Any] | None = None
    if offer is not None:
        mapped = map_shared(offer, sizes)
        conn.send(mapped is not None)
    store = cache if cache is not None else {}
    buffers: list[Any] = []
    for index, (size, key, skipped) in enumerate(zip(sizes, keys, skip, strict=True)):
        if skipped:
            buffers.append(store[key])
            continue
        if mapped is not None and mapped[index] is not None:
            buffers.append(mapped[index])
            continue
        buffer = bytearray(size)
        recv_bytes_into(conn, buffer)
        if key is not None:
            view = memoryview(buffer).toreadonly()
            store[key] = view
            buffers.append(view)
        else:
            buffers.append(buffer)
    return main, buffers


def recv_bytes_into(conn: Connection, buffer: bytearray) -> None:
    """`conn.recv_bytes_into(buffer)` without its two extra copies: read from the socket straight into it.

    (multiprocessing reads into a BytesIO and copies from there: twice the time for a large array.)
    """
    if not hasattr(os, "readv"):  # pragma: no cover - Windows
        conn.recv_bytes_into(buffer)
        return
    fd = conn.fileno()
    (size,) = struct.unpack("!i", _read_exactly(fd, 4))
    if size == -1:  # send_bytes' header for more than 2 GiB
        (size,) = struct.unpack("!Q", _read_exactly(fd, 8))
    if size != len(buffer):
        raise OSError(f"expected {len(buffer)} bytes, the peer sent {size}")
    _read_into(fd, memoryview(buffer))


def _read_exactly(fd: int, n: int) -> bytes:
    out = bytearray(n)
    _read_into(fd, memoryview(out))
    return bytes(out)


def _read_into(fd: int, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise EOFError
        got += n


def map_shared(offer: Shared, sizes: list[int]) -> list[Any] | None:
    """The offered buffers mapped copy-on-write (writable, private to this process), or None if unreachable."""
    try:
        fd = os.open(f"/proc/{offer.pid}/fd/{offer.fd}", os.O_RDONLY)
    except OSError:  # another machine, or another container on this one
        return None
    try:
        if os.pread(fd, len(offer.token), 0) != offer.token:
            return None
        return [
            None if offset is None else _map(fd, offset, size)
            for offset, size in zip(offer.offsets, sizes, strict=True)
        ]
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)  # the mappings outlive it


def _map(fd: int, offset: int, size: int) -> Any:
    if size == 0:
        return bytearray()
    # MAP_PRIVATE: a trial that writes to the array changes its own copy of the page only.
    return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE, offset=offset)
