"""The worker's side of the trial pool: runs inside a long-lived Spark task."""

from __future__ import annotations

import os
import socket
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Client
from typing import Any

from nbtune._payload import receive

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


def serve(address: tuple[str, int], secret: bytes, slot: int, threads: int) -> int:
    """Connect to the coordinator and run trials until it hangs up; return how many ran."""
    limit_threads(threads)
    conn = Client(address, family="AF_INET", authkey=secret)
    conn.send({"slot": slot, "host": socket.gethostname(), "pid": os.getpid()})
    try:
        objective = receive(conn)
    except Exception as exc:
        reason = traceback.format_exception_only(exc)[-1].strip()
        conn.send(("error", f"the cell's variables do not load on the workers: {reason}"))
        conn.close()
        return 0
    conn.send(("ready",))
    ran = 0
    while True:
        try:
            kind, request = conn.recv()
        except (EOFError, OSError):
            break  # the search is over (or was cancelled)
        if kind != "trial":
            break
        conn.send(objective.run(request))
        ran += 1
    conn.close()
    return ran


def task_function(address: tuple[str, int], secret: bytes, slot: int, threads: int) -> Any:
    """The function Spark runs (through mapInPandas) as one long-lived task of the pool."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pandas as pd

        for _ in batches:  # the one input row only says "start"
            pass
        ran = serve(address, secret, slot, threads)
        yield pd.DataFrame({"slot": [slot], "trials": [ran]})

    return run
