"""The driver's side of the trial pool: an authenticated channel that hands trials to workers.

Workers connect back, prove they hold the search's secret (HMAC challenge, both ways,
from `multiprocessing.connection`), receive the pickled objective once, then take trials
one at a time and send back outcomes. Nothing is unpickled before authentication.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any

from nbtune.spark._shared import SharedPayload
from nbtune.trial._payload import Packed, send
from nbtune.trial._records import LateRecording, ReportFn, TrialOutcome, TrialRequest

log = logging.getLogger(__name__)
_HANDSHAKE_TIMEOUT = 30.0  # seconds a connecting peer has to authenticate


@dataclass
class WorkerInfo:
    """Who is on the other end of a connection."""

    slot: int
    host: str
    pid: int


@dataclass
class Running:
    """A trial a worker is on, and since when (time.monotonic)."""

    request: TrialRequest
    started: float
    worker: WorkerInfo


class WorkerFailed(Exception):
    """A worker could not start (e.g. the cell's variables do not load on the workers)."""


class Coordinator:
    """Listen for workers while a search runs; queue trials to them; collect outcomes."""

    def __init__(
        self, host: str, objective: Packed, report: ReportFn | None = None, secret: bytes | None = None
    ) -> None:
        self.secret = secret or secrets.token_bytes(32)  # the session's, where its slot job is shared
        self._objective, self._report = objective, report
        # Large captured data goes to shared memory now, while the pool's tasks start (workers on this machine).
        self._shared = SharedPayload(objective) if SharedPayload.worth_it(objective) else None
        # A plain socket rather than multiprocessing's Listener: close() must be able to wake
        # accept() (shutdown does, close alone does not), and auth runs per connection thread.
        self._server = socket.create_server((host, 0))
        self.address: tuple[str, int] = self._server.getsockname()[:2]
        self.pending: queue.Queue[TrialRequest] = queue.Queue()
        self.outcomes: queue.Queue[TrialOutcome] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self.workers: dict[int, WorkerInfo] = {}  # slot -> the worker currently serving it
        self.running: dict[Connection, Running] = {}  # the trial each connected worker is on
        self.refused = 0
        # Asked of each worker that says hello: False sends it back before it loads anything (the pool
        # prefers workers that already ran the last search's cell; Spark then hands the slot another).
        self.welcome: Callable[[WorkerInfo], bool] = lambda info: True
        self.served: set[tuple[str, int]] = set()  # (host, pid) of the workers that ran a trial or task
        self._closed = threading.Event()
        self._connections: set[Connection] = set()
        self.receiving: set[Connection] = set()  # workers about to send a finished trial's MLflow recording
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="nbtune-coordinator", daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = self._server.accept()
            except OSError:
                return  # the listener was shut down
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # see _worker.connect
            conn = Connection(sock.detach())
            threading.Thread(target=self._serve, args=(conn,), name="nbtune-worker-conn", daemon=True).start()

    def _authenticate(self, conn: Connection) -> bool:
        # A peer that stalls mid-handshake only ties up its own thread; close() ends it.
        timer = threading.Timer(_HANDSHAKE_TIMEOUT, conn.close)
        timer.start()
        try:
            deliver_challenge(conn, self.secret)
            answer_challenge(conn, self.secret)
            return True
        except Exception:
            with self._lock:
                self.refused += 1
            return False
        finally:
            timer.cancel()

    def _serve(self, conn: Connection) -> None:
        with self._lock:
            self._connections.add(conn)
        try:
            if self._authenticate(conn):
                self._serve_worker(conn)
        except (EOFError, OSError, TypeError):
            pass  # the peer or close() hung up
        finally:
            with self._lock:
                self._connections.discard(conn)
            with contextlib.suppress(OSError):  # close() may have closed it already
                conn.close()

    def _serve_worker(self, conn: Connection) -> None:
        hello: dict[str, Any] = conn.recv()
        info = WorkerInfo(int(hello["slot"]), str(hello["host"]), int(hello["pid"]))
        if not self.welcome(info):
            return  # the worker sees the channel close, ends its task normally and goes back to Spark's idle pool
        local = self._shared is not None and info.host == socket.gethostname()
        send(conn, self._objective, shared=self._shared.offer() if self._shared is not None and local else None)
        ready = conn.recv()
        if ready[0] == "error":  # the objective did not load on that worker
            self.errors.put(str(ready[1]))
            return
        self.workers[info.slot] = info
        self._work(conn, info)

    def _work(self, conn: Connection, info: WorkerInfo) -> None:
        """Hand trials to one ready worker until the search ends (a subclass may serve other work)."""
        while not self._closed.is_set():
            try:
                request = self.pending.get(timeout=0.2)
            except queue.Empty:
                continue
            self.running[conn] = Running(request, time.monotonic(), info)
            try:
                conn.send(("trial", request))
                outcome = self._answer_reports(conn, request.tid)
            except (EOFError, OSError, TypeError) as exc:  # TypeError: closed under us by close()
                self.running.pop(conn, None)
                if not self._closed.is_set():
                    lost = TrialOutcome(tid=request.tid, status="failed", lost=True, host=info.host)
                    lost.error = f"the worker on {info.host} (pid {info.pid}) was lost: {type(exc).__name__}"
                    self.outcomes.put(lost)
                return
            self.running.pop(conn, None)
            self.has_served(info)
            if outcome.mlflow_follows:
                outcome.mlflow_later = LateRecording()
                with self._lock:  # before the loop sees the outcome: close() must not cut this connection
                    self.receiving.add(conn)
            self.outcomes.put(outcome)
            if outcome.mlflow_later is not None and not self._receive_recording(conn, outcome.mlflow_later):
                return

    def _receive_recording(self, conn: Connection, later: LateRecording) -> bool:
        """What the trial logged to MLflow, which its worker sends right after the outcome; False if it is gone."""
        try:
            _, runs, problem = conn.recv()  # ("mlflow", runs, problem)
        except (EOFError, OSError, TypeError):
            later.arrived([], "nbtune: the worker was lost before it sent what the trial logged to MLflow")
            return False
        finally:
            with self._lock:
                self.receiving.discard(conn)
        later.arrived(runs, problem)
        return True

    def _answer_reports(self, conn: Connection, tid: int) -> TrialOutcome:
        """Answer the trial's `nbtune.report` messages (prune it or not) until its outcome arrives."""
        while True:
            message = conn.recv()
            if isinstance(message, TrialOutcome):
                return message
            _, step, metrics = message  # ("report", step, {name: value})
            conn.send(bool(self._report and self._report(tid, int(step), dict(metrics))))

    def has_served(self, info: WorkerInfo) -> None:
        """Note that this worker ran the search's code (its imports are loaded there now)."""
        self.served.add((info.host, info.pid))

    @property
    def closed(self) -> bool:
        """True once close() was called."""
        return self._closed.is_set()

    def close(self) -> None:
        """Stop listening and drop every connection; workers then exit on their own."""
        self._closed.set()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        if self._shared is not None:
            self._shared.close()
        with self._lock:
            # A finished trial's recording on its way is kept: its thread closes the connection once it is in.
            conns = list(self._connections - self.receiving)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.close()
