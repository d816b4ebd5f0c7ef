"""Keep Spark's idle Python workers, and what they imported, alive between searches.

Spark ends every idle Python worker once no worker has been handed back for a minute
(PythonWorkerFactory's IDLE_WORKER_TIMEOUT_NS, hard-coded up to Spark 4; no setting changes it).
Handing one back restarts that minute for all of them, so while no search runs a daemon thread
runs a tiny job, one short task per slot, every `interval` seconds: Spark reuses the idle workers
for it and keeps them. It holds the cores for the task's few milliseconds only.

The rounds keep every idle worker alive, also ones that never ran a search (Spark hands idle workers
out oldest first). So the keeper remembers which workers ran the last search, and the next search's
pool sends other workers back while those are still to come (`PreferWarm`).
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from nbtune.spark._channel import WorkerInfo
from nbtune.spark._session import cancel_tag, is_connect
from nbtune.spark._worker import keep_warm_function, keep_warm_schema

INTERVAL = 40.0  # seconds between rounds: under Spark's 60 s, with room for its 10 s check and a busy machine
_SPARK_KEEPS = 50.0  # seconds Spark surely keeps an idle worker without rounds (its minute, less its 10 s check)

Worker = tuple[str, int]  # (host, pid) of a Spark Python worker


@dataclass
class Round:
    """One keep-alive job: when it ended (time.monotonic), how long it took, the worker pids it ran on."""

    ended: float
    seconds: float
    pids: list[int]


class KeepWarm:
    """The keep-alive of one Spark session: paused while a search runs, off `minutes` after the last one."""

    def __init__(self, spark: Any, interval: float = INTERVAL) -> None:
        self._spark = spark
        self.interval = interval  # tests shorten it
        self.tag = f"nbtune-keepwarm-{uuid.uuid4().hex[:12]}"
        self.rounds: deque[Round] = deque(maxlen=50)  # recent rounds, for tests and the benchmark
        self._cond = threading.Condition()
        self._searches = 0  # searches running now
        self._until = 0.0  # time.monotonic() after which workers may go cold
        self._last = 0.0  # when a worker was last handed back to Spark (a search's end or a round)
        self._slots = 1
        self._warm: set[Worker] = set()  # the workers that ran the last search
        self._warm_until = 0.0  # time.monotonic() after which they may be gone
        self._in_round = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    @property
    def in_round(self) -> bool:
        """True while a keep-alive job is queued or running."""
        return self._in_round

    @property
    def running(self) -> bool:
        """True while the keep-alive thread lives (rounds pending or under way)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def search_started(self) -> None:
        """Pause: a search's own tasks keep the workers busy; a round in flight is cancelled."""
        with self._cond:
            self._searches += 1
            in_round = self._in_round
            self._cond.notify_all()
        if in_round:  # a round still queued (other Spark work holds the cores) must not delay the search
            with contextlib.suppress(Exception):
                cancel_tag(self._spark, self.tag)

    def search_ended(self, minutes: float, slots: int, served: Iterable[Worker] = ()) -> None:
        """Keep `slots` workers warm for `minutes` from now (0: let Spark end them as usual).

        `served`: the workers that ran the search's trials, which the next search should have first.
        """
        with self._cond:
            self._searches = max(0, self._searches - 1)
            now = time.monotonic()
            self._until = now + minutes * 60.0 if minutes > 0 else 0.0
            self._last = now
            self._slots = max(1, slots)
            self._warm = set(served)
            self._warm_until = self._until or now + _SPARK_KEEPS
            self._cond.notify_all()
            if self._until and not self._stopped and not self.running:
                self._thread = threading.Thread(target=self._run, name="nbtune-keep-warm", daemon=True)
                self._thread.start()

    def warm_workers(self) -> set[Worker]:
        """The workers that ran the last search, while they are kept (empty once they may be gone)."""
        with self._cond:
            return set(self._warm) if time.monotonic() < self._warm_until else set()

    def stop(self) -> None:
        """End the keep-alive for good (the session stops)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    def _run(self) -> None:
        while self._next_round():
            self._round()

    def _next_round(self) -> bool:
        """Wait until a round is due; False once none will be (expired, switched off or stopped)."""
        with self._cond:
            while True:
                now = time.monotonic()
                self._stopped = self._stopped or _session_stopped(self._spark)
                if self._stopped or (self._searches == 0 and now >= self._until):
                    self._thread = None
                    return False
                if self._searches:
                    self._cond.wait()
                    continue
                due = self._last + self.interval
                if now >= due:
                    self._in_round = True
                    return True
                self._cond.wait(min(due, self._until) - now)

    def _round(self) -> None:
        start = time.monotonic()
        pids: list[int] = []
        try:
            with _tagged(self._spark, self.tag):
                n = self._slots
                frame = self._spark.range(n, numPartitions=n).mapInPandas(keep_warm_function(), keep_warm_schema())
                pids = [int(row["pid"]) for row in frame.collect()]
        except Exception:  # cancelled by a search, or the session went away: the loop finds out which
            pids = []
        finally:
            end = time.monotonic()
            with self._cond:
                self._in_round = False
                self._last = end
        if pids:
            self.rounds.append(Round(end, end - start, pids))


@contextlib.contextmanager
def _tagged(spark: Any, tag: str) -> Iterator[None]:
    """Tag this thread's jobs; a cancel leaves tasks uninterrupted (an interrupted task loses its worker)."""
    if is_connect(spark):
        spark.addTag(tag)
        try:
            yield
        finally:
            spark.removeTag(tag)
        return
    sc = spark.sparkContext
    sc.setInterruptOnCancel(False)
    sc.addJobTag(tag)
    try:
        yield
    finally:
        sc.removeJobTag(tag)


class PreferWarm:
    """A pool's welcome for its workers: send back others while the last search's workers are still to come.

    A worker sent back ends its task at once and goes to the end of Spark's idle queue, and the slot's
    next task is handed the next idle worker. `limit` bounds the cost (a Spark job start each, ~0.1 s)
    when a remembered worker is busy elsewhere or gone.
    """

    def __init__(self, warm: set[Worker], limit: int) -> None:
        self._awaited = set(warm)
        self._limit = limit
        self._lock = threading.Lock()
        self.sent_back = 0

    def __call__(self, worker: WorkerInfo) -> bool:
        with self._lock:
            key = (worker.host, worker.pid)
            if key in self._awaited:
                self._awaited.discard(key)
                return True
            if self._awaited and self.sent_back < self._limit:
                self.sent_back += 1
                return False
            return True


def _session_stopped(spark: Any) -> bool:
    if is_connect(spark):
        return bool(getattr(spark, "is_stopped", False))
    return getattr(spark.sparkContext, "_jsc", None) is None


_keepers: dict[int, KeepWarm] = {}
_lock = threading.Lock()


def keeper_of(spark: Any) -> KeepWarm:
    """The keep-alive of this session (one per session, made on first use)."""
    with _lock:
        keeper = _keepers.get(id(spark))
        if keeper is None or keeper._stopped or keeper._spark is not spark:
            keeper = _keepers[id(spark)] = KeepWarm(spark)
        return keeper
