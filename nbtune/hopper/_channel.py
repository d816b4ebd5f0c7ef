"""The driver's end of the hopper's channel: a partition for each slot's worker, then its hops and finishes.

Each slot has its own inbox (a hop is for the partition on that slot, not for any free worker);
a relaunched worker receives its slot's partition again before its first hop.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from nbtune.hopper._messages import FinishRequest, HopResult
from nbtune.hopper._schedule import Hop
from nbtune.spark._channel import Coordinator, WorkerInfo
from nbtune.trial._payload import Packed, load, receive, receive_raw, send
from nbtune.trial._records import LateRecording, TrialOutcome


@dataclass
class HopJob:
    """A hop on its way to its worker."""

    hop: Hop
    packed: Packed  # the HopRequest


@dataclass
class FinishJob:
    """A model's last run of the cell, on the worker `worker`."""

    worker: int
    request: FinishRequest


@dataclass
class HopDone:
    """A hop that came back."""

    hop: Hop
    result: HopResult


@dataclass
class FinishDone:
    """A finished model's trial outcome."""

    job: FinishJob
    outcome: TrialOutcome


@dataclass
class JobLost:
    """The worker died under a job: the executor sends it again."""

    job: HopJob | FinishJob
    why: str


Event = HopDone | FinishDone | JobLost


@dataclass
class HopperTraffic:
    """Bytes over the channel (for tests and the benchmark): partitions per slot, and the models' hops."""

    partition_bytes: dict[int, int] = field(default_factory=dict)  # slot -> bytes of partitions sent to it
    partitions_sent: int = 0  # partitions the slots' workers took in (sent, or read from a DataFrame's rows)
    partition_rows: dict[int, int] = field(default_factory=dict)  # slot -> rows its worker holds now
    hop_bytes_sent: int = 0  # driver -> workers: hop requests (weights and optimizer state)
    hop_bytes_received: int = 0  # workers -> driver: hop results
    hops: int = 0


class HopperCoordinator(Coordinator):
    """The warm pool's channel, serving the hopper: slot k's worker holds partition k."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.inboxes: dict[int, queue.Queue[HopJob | FinishJob]] = {}
        self.events: queue.Queue[Event] = queue.Queue()
        self.traffic = HopperTraffic()
        self._partitions: list[Packed] | None = []
        self._started = threading.Event()
        self._count = threading.Lock()

    def start(self, slots: int, partitions: list[Packed] | None) -> None:
        """The partitions, one per slot (None: each slot's task reads its rows itself); workers wait for this."""
        self._partitions = partitions
        self.inboxes = {slot: queue.Queue() for slot in range(slots)}
        self._started.set()

    def _work(self, conn: Connection, info: WorkerInfo) -> None:
        while not self._started.wait(0.2):
            if self.closed:
                return
        slot = info.slot
        try:
            if self._partitions is None:  # its Spark task holds the slot's rows: the worker stacks them now
                conn.send(("call", (0, "resident")))
                sent = 0
            else:
                conn.send(("call", (1, "partition")))
                sent = send(conn, self._partitions[slot])
            rows: int | str = receive(conn)  # the worker holds it, or why not
        except (EOFError, OSError, TypeError):
            return  # lost before its first hop: the slot is relaunched and asks again
        if isinstance(rows, str):
            self.errors.put(rows)
            return
        with self._count:
            if sent:
                self.traffic.partition_bytes[slot] = self.traffic.partition_bytes.get(slot, 0) + sent
            self.traffic.partition_rows[slot] = rows
            self.traffic.partitions_sent += 1
        inbox = self.inboxes[slot]
        while not self.closed:
            try:
                job = inbox.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                keep_going = self._hop(conn, job) if isinstance(job, HopJob) else self._finish(conn, job)
                self.has_served(info)
            except (EOFError, OSError, TypeError) as exc:  # TypeError: closed under us by close()
                if not self.closed:
                    self.events.put(
                        JobLost(job, f"the worker on {info.host} (pid {info.pid}) was lost: {type(exc).__name__}")
                    )
                return
            if not keep_going:
                return

    def _hop(self, conn: Connection, job: HopJob) -> bool:
        conn.send(("call", (1, "hop")))
        sent = send(conn, job.packed)
        main, buffers = receive_raw(conn)
        received = len(main) + sum(len(b) for b in buffers)
        with self._count:
            self.traffic.hop_bytes_sent += sent
            self.traffic.hop_bytes_received += received
            self.traffic.hops += 1
        self.events.put(HopDone(job.hop, load((main, buffers))))
        return True

    def _finish(self, conn: Connection, job: FinishJob) -> bool:
        conn.send(("trial", job.request))
        outcome = self._answer_reports(conn, job.request.tid)
        if outcome.mlflow_follows:
            outcome.mlflow_later = LateRecording()
            with self._lock:  # before the loop sees the outcome: close() must not cut this connection
                self.receiving.add(conn)
        self.events.put(FinishDone(job, outcome))
        return outcome.mlflow_later is None or self._receive_recording(conn, outcome.mlflow_later)
