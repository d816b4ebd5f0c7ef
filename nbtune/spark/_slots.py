"""The pool's slot job on a classic session: one DataFrame for every slot of every search.

Building a `mapInPandas` DataFrame and planning it costs a slot ~35 ms before its task starts.
On a classic session the job is built once, with a secret of the session's own; each launch
names its slot in a local property of the launching thread (Spark hands those to the job's
tasks), so the same plan serves every slot and search. Spark Connect has no local properties:
there each slot builds its own (`task_function`).
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections.abc import Iterator
from typing import Any

from nbtune.spark._session import is_connect
from nbtune.spark._worker import POOL_PROPERTY, session_task_function, task_schema


class SlotJob:
    """One classic session's slot job, and the secret its workers answer the coordinators with."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.key = worker_key(spark)
        self.secret = secrets.token_bytes(32)
        fn = session_task_function(self.secret)
        self._frame = spark.range(1, numPartitions=1).mapInPandas(fn, task_schema())

    @contextlib.contextmanager
    def for_slot(self, address: tuple[str, int], slot: int, threads: int) -> Iterator[Any]:
        """The job's DataFrame, its tasks told (on this thread) which coordinator and slot they serve."""
        context = self.spark.sparkContext
        context.setLocalProperty(POOL_PROPERTY, f"{address[0]}:{address[1]}:{slot}:{threads}")
        try:
            yield self._frame
        finally:
            context.setLocalProperty(POOL_PROPERTY, None)


_jobs: dict[int, SlotJob] = {}
_lock = threading.Lock()


def slot_job(spark: Any) -> SlotJob | None:
    """The slot job of this session (made on first use); None on Spark Connect."""
    if is_connect(spark):
        return None
    with _lock:
        job = _jobs.get(id(spark))
        if job is None or job.spark is not spark or job.key != worker_key(spark):
            job = _jobs[id(spark)] = SlotJob(spark)
        return job


def worker_key(spark: Any) -> tuple[Any, ...]:
    """What a Python function takes from the session when it is built, and which Python workers run it.

    Spark keeps a pool of Python workers per environment: a job built before `sc.environment` or the
    Python files changed would run on other workers than the keep-alive's rounds, built afresh each time.
    """
    context = spark.sparkContext
    return (
        context.pythonExec,
        tuple(sorted(context.environment.items())),
        tuple(getattr(context, "_python_includes", None) or ()),
    )
