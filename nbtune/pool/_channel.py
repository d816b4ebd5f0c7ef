"""The driver's end of a Pool's channel: hands batches of tasks to the warm workers."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from nbtune.pool._task import BatchResult
from nbtune.spark._channel import Coordinator, WorkerInfo
from nbtune.trial._payload import Held, Packed, receive, send


@dataclass
class Outgoing:
    """A packed batch on its way to a worker, with its function packed once for the whole pool."""

    job: int
    index: int
    fid: int
    size: int  # tasks in the batch
    batch: Packed
    function: Packed
    cancelled: threading.Event = field(default_factory=threading.Event)  # its job was given up
    attempt: int = 1


@dataclass
class Lost:
    """A batch whose worker died under it: the pool sends it again."""

    outgoing: Outgoing
    why: str


@dataclass
class Traffic:
    """What went over the channel to the workers (for tests and benchmarks)."""

    bytes_sent: int = 0
    functions_sent: int = 0
    batches_sent: int = 0


class TaskCoordinator(Coordinator):
    """The trial pool's channel, serving Pool batches instead of trials."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.batches: queue.Queue[Outgoing] = queue.Queue()
        self.results: queue.Queue[BatchResult | Lost] = queue.Queue()
        self.traffic = Traffic()
        self._count = threading.Lock()

    def _work(self, conn: Connection, info: WorkerInfo) -> None:
        held = Held()  # the large buffers this worker keeps (its own functions are in `functions`)
        functions: set[int] = set()
        while not self.closed:
            try:
                out = self.batches.get(timeout=0.2)
            except queue.Empty:
                continue
            if out.cancelled.is_set():
                continue
            new = out.fid not in functions
            try:
                conn.send(("call", (2 if new else 1, out.job, out.index, out.size)))
                sent = send(conn, out.batch, held)
                if new:
                    sent += send(conn, out.function, held)
                    functions.add(out.fid)
                with self._count:
                    self.traffic.bytes_sent += sent
                    self.traffic.functions_sent += new
                    self.traffic.batches_sent += 1
                result: BatchResult = receive(conn)
            except (EOFError, OSError, TypeError) as exc:  # TypeError: closed under us by close()
                if not self.closed:
                    why = f"the worker on {info.host} (pid {info.pid}) was lost: {type(exc).__name__}"
                    self.results.put(Lost(out, why))
                return
            self.has_served(info)
            self.results.put(result)
