"""The worker's side of the warm pool: runs inside a long-lived Spark task.

It serves what the driver's payload can run: trials (`("trial", request)`, the payload is the
objective) or batches of `nbtune.Pool` tasks (`("call", header)` then its parts; the payload runs them).
"""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, answer_challenge, deliver_challenge
from typing import Any

from nbtune.trial._native_output import native_output
from nbtune.trial._objective import OUTPUT_LIMIT
from nbtune.trial._payload import receive, receive_raw, send
from nbtune.trial._records import TrialOutcome, TrialRequest
from nbtune.trial._report import Reporter

_serving = False  # set while this process serves a pool: a Pool or joblib call in a task then runs serially
_input: Iterator[Any] | None = None  # the Arrow batches of the rows this slot's task was given (see input_batches)

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def limit_threads(threads: int) -> None:
    """Keep numeric libraries to this worker's share of the cores, or parallel trials fight."""
    for name in _THREAD_VARS:
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)  # numpy/BLAS already loaded by pandas in the Spark worker
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        pass


def serving() -> bool:
    """True inside a pool's Spark task: work started there must not ask the pool for more slots."""
    return _serving


def serve(address: tuple[str, int], secret: bytes, slot: int, threads: int) -> tuple[int, str]:
    """Run trials from the coordinator until it hangs up; return how many ran and why it could not connect."""
    global _serving
    limit_threads(threads)
    try:
        conn = connect(address, secret)
    except (EOFError, OSError) as exc:  # the search ended before this task started, or no route back
        return 0, f"{type(exc).__name__}: {exc}"
    ran = 0
    cache: dict[str, Any] = {}  # large buffers the driver sent once to this worker, by content key
    _serving = True
    try:
        conn.send({"slot": slot, "host": socket.gethostname(), "pid": os.getpid()})
        try:
            objective = receive(conn)
        except (EOFError, OSError):
            raise
        except Exception as exc:
            reason = traceback.format_exception_only(exc)[-1].strip()
            conn.send(("error", f"the cell's variables do not load on the workers: {reason}"))
            return 0, ""
        conn.send(("ready",))
        while True:
            message = conn.recv()
            if isinstance(message, bool):
                continue  # the answer to a report that a trial timeout interrupted
            kind, request = message
            if kind == "trial":
                outcome = run_trial(objective, request, _reporter(conn))
                conn.send(outcome)
                if outcome.mlflow_follows:  # read the trial's MLflow store while the driver picks the next trial
                    conn.send(("mlflow", *objective.take_recording()))
            elif kind == "call":  # a batch of pool tasks: its parts follow, the payload loads and runs them
                parts = [receive_raw(conn, cache) for _ in range(request[0])]
                send(conn, objective.call(request, parts))
            else:
                break
            ran += 1
    except (EOFError, OSError):
        pass  # the coordinator hung up: the search is over or was cancelled
    finally:
        _serving = False
        conn.close()
    # Ending normally (not failing the task) keeps Spark's Python worker, and its imports, for next time.
    return ran, ""


def _reporter(conn: Connection) -> Reporter:
    """Send a trial's report to the coordinator and wait for its answer: prune or go on."""

    def send(step: int, metrics: dict[str, float]) -> bool:
        conn.send(("report", step, metrics))
        return bool(conn.recv())

    return send


def run_trial(objective: Any, request: TrialRequest, reporter: Reporter | None = None) -> TrialOutcome:
    """One trial, with what native code printed added to the Python output it captured itself."""
    with native_output(OUTPUT_LIMIT) as native:
        outcome: TrialOutcome = objective.run(request, reporter, defer_mlflow=True)
    if native.text:
        outcome.output = (outcome.output + native.text)[-OUTPUT_LIMIT:]
    return outcome


def connect(address: tuple[str, int], secret: bytes) -> Connection:
    """An authenticated connection to the coordinator (what `multiprocessing.connection.Client` does)."""
    sock = socket.create_connection(address)
    # The protocol sends small messages back to back; Nagle + delayed ACK would add 40 ms to each pair.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    conn = Connection(sock.detach())
    try:
        answer_challenge(conn, secret)
        deliver_challenge(conn, secret)
    except BaseException:
        conn.close()
        raise
    return conn


def task_schema() -> Any:
    """The one row each pool task returns (a StructType: parsing a DDL string costs a JVM round trip)."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    return StructType(
        [StructField("slot", LongType()), StructField("trials", LongType()), StructField("unreachable", StringType())]
    )


Slot = tuple[tuple[str, int], int, int]  # (the coordinator's address, this task's slot, its threads)


def task_function(address: tuple[str, int], secret: bytes, slot: int, threads: int) -> Any:
    """The function Spark runs (through mapInPandas) as one long-lived task of the pool."""
    return _pool_task(secret, lambda: (address, slot, threads))


POOL_PROPERTY = "nbtune.pool"  # the job's local property naming its slot: "host:port:slot:threads"


def session_task_function(secret: bytes) -> Any:
    """A pool task like task_function's, for every search of a session: the job's local property names the slot.

    Built once per session, its DataFrame's plan is reused by every slot job (it starts ~35 ms sooner).
    """
    return _pool_task(secret, _slot_of_job)


def _slot_of_job() -> Slot:
    from pyspark import TaskContext

    context = TaskContext.get()
    host, port, slot, threads = str(context.getLocalProperty(POOL_PROPERTY) if context else "").rsplit(":", 3)
    return (host, int(port)), int(slot), int(threads)


def _pool_task(secret: bytes, where: Callable[[], Slot]) -> Any:
    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        # Serve at once: the one input row only says "start" and arrives ~40 ms after Spark calls us.
        address, slot, threads = where()
        ran, unreachable = serve(address, secret, slot, threads)
        for _ in batches:  # drained all the same, or Spark would not reuse this Python worker
            pass
        yield pd.DataFrame({"slot": [slot], "trials": [ran], "unreachable": [unreachable]})

    return run


def input_batches() -> Iterator[Any]:
    """The Arrow record batches of the DataFrame rows this slot's task runs over (a hopper's resident partition)."""
    if _input is None:
        raise RuntimeError("this pool task was started without rows of a DataFrame")
    return _input


def input_task_function(address: tuple[str, int], secret: bytes, slot: int, threads: int) -> Any:
    """A pool task (through mapInArrow) over the rows of a DataFrame, which its payload reads with input_batches."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        ran, unreachable = serve_rows(batches, address, secret, slot, threads)
        yield pa.RecordBatch.from_pydict(
            {"slot": [slot], "trials": [ran], "unreachable": [unreachable]},
            schema=pa.schema([("slot", pa.int64()), ("trials", pa.int64()), ("unreachable", pa.string())]),
        )

    return run


def serve_rows(
    batches: Iterator[Any], address: tuple[str, int], secret: bytes, slot: int, threads: int
) -> tuple[int, str]:
    """Serve with this task's rows at hand (a module function: the closure Spark runs has its own globals).

    It connects first and reads the rows when the payload asks: a worker the coordinator sends back
    (see `Coordinator.welcome`) then costs no read.
    """
    global _input
    _input = batches
    try:
        return serve(address, secret, slot, threads)
    finally:
        _input = None
        for _ in batches:  # drained all the same, or Spark would not reuse this Python worker
            pass


def keep_warm_schema() -> Any:
    """The row a keep-alive task returns: the pid of the Python worker it ran on."""
    from pyspark.sql.types import LongType, StructField, StructType

    return StructType([StructField("pid", LongType())])


def keep_warm_function() -> Any:
    """A keep-alive task (see `nbtune.spark._keepwarm`): it only has Spark hand its Python worker back."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        for _ in batches:  # drained, or Spark would not reuse this worker
            pass
        yield pd.DataFrame({"pid": [os.getpid()]})

    return run
