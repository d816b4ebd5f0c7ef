"""A map's chunks as they come back, and `AsyncResult`: waiting for them and re-raising failures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from nbtune.pool._task import RemoteFailure

T = TypeVar("T")


class RemoteTraceback(Exception):
    """The worker's traceback of a task that raised; the re-raised exception's __cause__."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class TaskFailed(Exception):
    """A task raised an exception that could not come back as itself (it does not pickle)."""


class PoolTerminated(Exception):
    """The pool was terminated (or interrupted) before this work finished."""


def rebuild(failure: RemoteFailure) -> BaseException:
    """The task's exception, with the worker's traceback attached as its cause."""
    exc = failure.exception
    if exc is None:
        exc = TaskFailed(f"{failure.type_name}: {failure.message}")
    exc.__cause__ = RemoteTraceback(f'\n"""\nOn the worker ({failure.host}):\n{failure.traceback}"""')
    return exc


class Job:
    """The chunks of one call (map, imap, apply_async): filled by the pool's collector thread."""

    def __init__(self, job_id: int, chunks: int, tasks: int) -> None:
        self.id, self.chunks, self.tasks = job_id, chunks, tasks
        self.done_tasks = 0
        self.results: dict[int, list[tuple[bool, Any]]] = {}
        self.order: list[int] = []  # chunk indices in the order they finished
        self.error: BaseException | None = None  # the whole job failed (pool terminated, workers lost)
        self.cancelled = threading.Event()
        self.changed = threading.Condition()
        self.on_done: list[Callable[[Job], None]] = []

    def add(self, index: int, results: list[tuple[bool, Any]]) -> None:
        """A chunk came back."""
        with self.changed:
            if index in self.results or self.error is not None:
                return
            self.results[index] = results
            self.order.append(index)
            self.done_tasks += len(results)
            self.changed.notify_all()
        if self.finished:
            self._call_back()

    def fail(self, error: BaseException) -> None:
        """The job cannot finish: every waiter gets `error`."""
        with self.changed:
            if self.finished:
                return
            self.error = error
            self.changed.notify_all()
        self._call_back()

    @property
    def finished(self) -> bool:
        """All chunks are back, or the job failed."""
        return self.error is not None or len(self.results) >= self.chunks

    def wait_for(self, ready: Callable[[], bool], timeout: float | None) -> bool:
        """Wait until `ready()` (checked under the lock) or the timeout; whether it is ready."""
        with self.changed:
            return self.changed.wait_for(ready, timeout)

    def _call_back(self) -> None:
        for callback in self.on_done:
            callback(self)


def unpack(chunk: list[tuple[bool, Any]]) -> Iterator[Any]:
    """The values of a chunk in order, raising a task's exception where it failed."""
    for ok, value in chunk:
        if not ok:
            raise rebuild(value)
        yield value


class AsyncResult(Generic[T]):
    """What `apply_async` and `map_async` return, as in `multiprocessing.pool.AsyncResult`."""

    def __init__(
        self,
        job: Job,
        single: bool,
        callback: Callable[[T], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> None:
        self._job, self._single = job, single
        self._callback, self._error_callback = callback, error_callback
        job.on_done.append(self._finished)

    def _finished(self, job: Job) -> None:
        try:
            value = self._value()
        except BaseException as exc:
            if self._error_callback is not None:
                self._error_callback(exc)
            return
        if self._callback is not None:
            self._callback(value)

    def _value(self) -> Any:
        job = self._job
        if job.error is not None:
            raise job.error
        values = [v for index in range(job.chunks) for v in unpack(job.results[index])]
        return values[0] if self._single else values

    def ready(self) -> bool:
        """Whether the call finished."""
        return self._job.finished

    def successful(self) -> bool:
        """Whether it finished without raising; ValueError if not finished yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        try:
            self._value()
        except Exception:
            return False
        return True

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the call finishes or `timeout` seconds pass."""
        self._job.wait_for(lambda: self._job.finished, timeout)

    def get(self, timeout: float | None = None) -> T:
        """The call's value; re-raises its exception; TimeoutError if not ready in `timeout` seconds."""
        if not self._job.wait_for(lambda: self._job.finished, timeout):
            raise TimeoutError
        value: T = self._value()
        return value
