"""What runs in the worker for `nbtune.Pool`: batches of calls of one function (light: stdlib only)."""

from __future__ import annotations

import os
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from nbtune.trial._payload import Packed, load, pack

Header = tuple[int, int, int, int]  # (parts that follow, job, chunk index, tasks in the chunk)
Call = Literal["one", "star", "kw"]  # f(item), f(*item) (starmap), f(*args, **kwds) (apply_async)


@dataclass
class TaskBatch:
    """A chunk of one map's tasks: which function (by id) and the arguments of each call."""

    job: int
    index: int  # the chunk's place in its job
    fid: int  # the function, sent to each worker once and kept there under this id
    items: list[Any]
    call: Call = "one"


@dataclass
class RemoteFailure:
    """A task that raised: the exception itself when it pickles, and the worker's traceback."""

    type_name: str
    message: str
    traceback: str
    host: str
    exception: BaseException | None = None


@dataclass
class BatchResult:
    """A chunk's results in order: (True, value) or (False, RemoteFailure) per task."""

    job: int
    index: int
    results: list[tuple[bool, Any]]
    host: str = ""
    pid: int = 0
    seconds: float = 0.0  # time spent in the tasks, for the slot efficiency
    extra: dict[str, Any] = field(default_factory=dict)


class TaskRunner:
    """The pool's payload on each worker: keeps the functions it was sent and runs batches."""

    def __init__(self) -> None:
        self.functions: dict[int, Callable[..., Any]] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a fresh runner on each worker

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.functions = {}

    def call(self, header: Header, parts: list[tuple[bytes, list[Any]]]) -> Packed:
        """Load a batch (and its function when new here), run it; the packed BatchResult."""
        _, job, index, size = header
        host = socket.gethostname()
        try:
            batch: TaskBatch = load(parts[0])
            if len(parts) > 1:
                self.functions[batch.fid] = load(parts[1])
            f = self.functions[batch.fid]
        except Exception as exc:  # e.g. a class from a module the workers cannot import
            failure = _failure(exc, host)
            failure.message = f"the tasks do not load on the worker: {failure.type_name}: {failure.message}"
            failure.exception = None
            return pack(BatchResult(job, index, [(False, failure)] * size, host, os.getpid()))
        host = socket.gethostname()
        start = time.perf_counter()
        results = run_items(f, batch.items, batch.call, host)
        seconds = time.perf_counter() - start
        out = BatchResult(batch.job, batch.index, results, host, os.getpid(), seconds)
        try:
            return pack(out)
        except Exception:  # a value or an exception that does not pickle: say so for that task only
            out.results = [_sendable(ok, value, host) for ok, value in results]
            return pack(out)


def run_items(f: Callable[..., Any], items: list[Any], call: Call, host: str) -> list[tuple[bool, Any]]:
    """Call f on each item: (True, value) or (False, RemoteFailure) per item, in order."""
    results: list[tuple[bool, Any]] = []
    for item in items:
        try:
            if call == "one":
                value = f(item)
            elif call == "star":
                value = f(*item)
            else:
                value = f(*item[0], **item[1])
            results.append((True, value))
        except Exception as exc:
            results.append((False, _failure(exc, host)))
    return results


def _failure(exc: BaseException, host: str) -> RemoteFailure:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return RemoteFailure(type(exc).__qualname__, str(exc), text, host, exc)


def _sendable(ok: bool, value: Any, host: str) -> tuple[bool, Any]:
    """The result as is if it pickles, else a failure that says why it could not come back."""
    try:
        pack(value)
        return ok, value
    except Exception as exc:
        if not ok:  # the task's exception does not pickle: keep its text
            value.exception = None
            return False, value
        why = f"the task's result could not be sent back: {type(exc).__name__}: {exc}"
        return False, RemoteFailure("PicklingError", why, why, host)


def call_it(f: Callable[[], Any]) -> Any:
    """Run a zero-argument callable (joblib's batches travel as arguments of this one function)."""
    return f()
