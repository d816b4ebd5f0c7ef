"""`nbtune.Pool`: a `multiprocessing.Pool` whose processes are the warm pool's Spark tasks."""

from __future__ import annotations

import contextlib
import itertools
import math
import queue
import socket
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from nbtune.pool import hook_joblib
from nbtune.pool._channel import Lost, Outgoing, TaskCoordinator, Traffic
from nbtune.pool._keys import BufferKeys
from nbtune.pool._progress import Progress
from nbtune.pool._results import AsyncResult, Job, PoolTerminated, unpack
from nbtune.pool._task import BatchResult, Call, TaskBatch, TaskRunner, run_items
from nbtune.spark._worker import serving
from nbtune.trial._payload import Packed, pack

T = TypeVar("T")
_ATTEMPTS = 3  # sends of a batch whose worker keeps dying before it gives up
_CHUNKS_PER_SLOT = 16  # auto chunksize: enough chunks to balance the slots, few enough to be cheap
_warned_nested = False
_open_pools: weakref.WeakSet[Pool] = weakref.WeakSet()


class Pool:
    """`map`, `imap`, `imap_unordered`, `starmap`, `apply_async` on Spark, like `multiprocessing.Pool`.

    Each function (and what it captures) goes to each worker once per pool; arguments of 1 MB
    and more go to each worker once (by content); results stream back as chunks finish.
    """

    def __init__(self, processes: int | None = None, spark: Any = None, progress: bool = True) -> None:
        if processes is not None and (not isinstance(processes, int) or isinstance(processes, bool) or processes < 1):
            raise ValueError(f"Number of processes must be at least 1, got {processes!r}")
        self._show_progress = progress
        self._state = "run"
        self._jobs: dict[int, Job] = {}
        self._job_ids = itertools.count()
        self._functions: dict[int, tuple[Callable[..., Any], int, Packed]] = {}
        self._keys = BufferKeys()
        self._lock = threading.Lock()
        self._function_lock = threading.Lock()
        self._broken: str | None = None
        self.busy_seconds = 0.0  # time the workers spent in tasks (for slot efficiency)
        self._executor: Any = None
        self._coordinator: TaskCoordinator | None = None
        if serving():  # inside a pool's own task: more slots would wait on the one this task holds
            _warn_nested()
            self._processes = 1
            return
        from nbtune.spark._pool import SparkPoolExecutor

        if _open_pools:  # its tasks hold their Spark cores until it is closed
            warnings.warn(
                f"{len(_open_pools)} other nbtune.Pool still open in this process: its Spark tasks hold their "
                "cores until it is closed (use `with nbtune.Pool() as pool:`), so this pool may wait for them",
                RuntimeWarning,
                stacklevel=2,
            )

        self._executor = SparkPoolExecutor(
            spark if spark is not None else _session(), pack(TaskRunner()), processes, coordinator=TaskCoordinator
        )
        self._coordinator = cast(TaskCoordinator, self._executor.coordinator)
        self._processes = int(self._executor.slots)
        self._collector = threading.Thread(target=self._collect, name="nbtune-pool-collector", daemon=True)
        self._collector.start()
        _open_pools.add(self)

    @property
    def processes(self) -> int:
        """How many tasks run at once (the Spark slots)."""
        return self._processes

    @property
    def traffic(self) -> Traffic:
        """Bytes, functions and batches sent to the workers so far."""
        return self._coordinator.traffic if self._coordinator is not None else Traffic()

    # -- the multiprocessing.Pool API --------------------------------------------------------------

    def map(self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int | None = None) -> list[T]:
        """`[func(x) for x in iterable]`, run on the pool; re-raises the first failing task's exception."""
        job = self._start(self._prepare(func, iterable, chunksize, "one"))
        self._wait(job, "nbtune.Pool map")
        return [v for index in range(job.chunks) for v in unpack(job.results[index])]

    def starmap(
        self, func: Callable[..., T], iterable: Iterable[Iterable[Any]], chunksize: int | None = None
    ) -> list[T]:
        """`[func(*args) for args in iterable]`, run on the pool."""
        job = self._start(self._prepare(func, iterable, chunksize, "star"))
        self._wait(job, "nbtune.Pool starmap")
        return [v for index in range(job.chunks) for v in unpack(job.results[index])]

    def imap(self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int | None = None) -> Iterator[T]:
        """Like map, but yields each result, in order, as soon as it is back."""
        job = self._start(self._prepare(func, iterable, chunksize, "one"))
        return self._stream(job, ordered=True)

    def imap_unordered(
        self, func: Callable[..., T], iterable: Iterable[Any], chunksize: int | None = None
    ) -> Iterator[T]:
        """Like imap, but yields results as they finish."""
        job = self._start(self._prepare(func, iterable, chunksize, "one"))
        return self._stream(job, ordered=False)

    def map_async(
        self,
        func: Callable[..., T],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[list[T]], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult[list[T]]:
        """Map without waiting; `.get()` gives the list."""
        work = self._prepare(func, iterable, chunksize, "one")
        result: AsyncResult[list[T]] = AsyncResult(work.job, False, callback, error_callback)
        self._start(work)
        return result

    def apply_async(
        self,
        func: Callable[..., T],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] | None = None,
        callback: Callable[[T], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult[T]:
        """Call `func(*args, **kwds)` on a worker; `.get()` gives its value."""
        work = self._prepare(func, [(tuple(args), dict(kwds or {}))], 1, "kw")
        result: AsyncResult[T] = AsyncResult(work.job, True, callback, error_callback)
        self._start(work)
        return result

    def apply(self, func: Callable[..., T], args: Iterable[Any] = (), kwds: Mapping[str, Any] | None = None) -> T:
        """`func(*args, **kwds)` on a worker."""
        return self.apply_async(func, args, kwds).get()

    def _call_async(
        self, func: Callable[..., Any], args: Iterable[Any], on_done: Callable[[AsyncResult[Any]], Any] | None
    ) -> AsyncResult[Any]:
        """apply_async for joblib: `on_done` gets the AsyncResult itself once it finishes."""
        work = self._prepare(func, [(tuple(args), {})], 1, "kw")
        result: AsyncResult[Any] = AsyncResult(work.job, True)
        if on_done is not None:
            work.job.on_done.append(lambda _job: on_done(result))
        self._start(work)
        return result

    def close(self) -> None:
        """Take no more work; running work finishes (then `join`)."""
        if self._state == "run":
            self._state = "close"

    def join(self) -> None:
        """Wait for the work given so far, then end the Spark tasks (after close or terminate)."""
        if self._state == "run":
            raise ValueError("Pool is still running")
        for job in list(self._jobs.values()):
            while not job.wait_for(lambda job=job: job.finished, 0.2):  # type: ignore[misc]
                pass
        self._shutdown(cancel=False)

    def terminate(self) -> None:
        """Stop now: cancel the Spark jobs; unfinished work raises PoolTerminated."""
        self._state = "terminate"
        self._shutdown(cancel=True)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        # Unlike multiprocessing (which always terminates), a pool with nothing running ends gently,
        # so Spark keeps its Python workers (and their imports) warm for the next pool.
        if exc[0] is None and not self._jobs:
            self.close()
            self.join()
        else:
            self.terminate()

    def __repr__(self) -> str:
        return f"<nbtune.Pool state={self._state} processes={self._processes}>"

    # -- submitting ----------------------------------------------------------------------------------

    def _prepare(self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int | None, call: Call) -> _Work:
        """Check the call and cut its items into chunks (nothing is sent yet)."""
        if self._state != "run":
            raise ValueError("Pool not running")
        if self._broken:
            raise RuntimeError(self._broken)
        if not callable(func):
            raise TypeError(f"{type(func).__name__!r} object is not callable")
        items = list(iterable)  # TypeError for a non-iterable, as multiprocessing gives
        if call == "star":
            items = [tuple(args) for args in items]
        if chunksize is None:
            chunksize = max(1, math.ceil(len(items) / (self._processes * _CHUNKS_PER_SLOT)))
        elif chunksize < 1:
            raise ValueError(f"chunksize must be at least 1, got {chunksize!r}")
        chunks = [items[i : i + chunksize] for i in range(0, len(items), chunksize)]
        job = Job(next(self._job_ids), len(chunks), len(items))
        if call != "kw":
            self._keys.forget()  # the arrays of a new map may have changed in place since the last
        return _Work(job, func, chunks, call)

    def _start(self, work: _Work) -> Job:
        """Send a call's chunks to the workers (or, nested in a pool task, run them here)."""
        job, func, chunks, call = work.job, work.func, work.chunks, work.call
        if not chunks:
            job.add(-1, [])  # nothing to do: finished at once (callbacks run)
            return job
        if self._coordinator is None:  # nested: run here, one chunk after another
            host = socket.gethostname()
            for index, chunk in enumerate(chunks):
                job.add(index, run_items(func, chunk, call, host))
            return job
        fid, function = self._function(func)
        outgoing = [
            Outgoing(
                job.id, i, fid, len(chunk), self._pack(TaskBatch(job.id, i, fid, chunk, call)), function, job.cancelled
            )
            for i, chunk in enumerate(chunks)
        ]
        with self._lock:
            self._jobs[job.id] = job
        for out in outgoing:
            self._coordinator.batches.put(out)
        return job

    def _function(self, func: Callable[..., Any]) -> tuple[int, Packed]:
        """The function's id in this pool and its pickle, made once."""
        with self._function_lock:  # joblib submits from its callback thread too
            known = self._functions.get(id(func))
            if known is not None and known[0] is func:
                return known[1], known[2]
            try:
                packed = pack(func, key=self._keys)
            except Exception as exc:
                why = _culprit(func, exc)
                raise TypeError(f"nbtune.Pool cannot send {_name(func)} to the workers: {why}") from None
            fid = len(self._functions)
            self._functions[id(func)] = (func, fid, packed)  # holding func keeps its id unique
            return fid, packed

    def _pack(self, batch: TaskBatch) -> Packed:
        try:
            return pack(batch, key=self._keys)
        except Exception as exc:
            raise TypeError(
                f"nbtune.Pool cannot send the arguments to the workers: {type(exc).__name__}: {exc}"
            ) from None

    # -- results -------------------------------------------------------------------------------------

    def _collect(self) -> None:
        """Route the chunks coming back to their jobs; resend the batches of workers that died."""
        coordinator = cast(TaskCoordinator, self._coordinator)
        while self._state != "terminate":
            with contextlib.suppress(queue.Empty):
                error = coordinator.errors.get_nowait()
                self._fail_all(RuntimeError(error), broken=error)
            try:
                got = coordinator.results.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(got, Lost):
                self._resend(got)
                continue
            self._deliver(got)

    def _deliver(self, result: BatchResult) -> None:
        self.busy_seconds += result.seconds
        with self._lock:
            job = self._jobs.get(result.job)
        if job is None:
            return
        job.add(result.index, result.results)
        if job.finished:
            with self._lock:
                self._jobs.pop(job.id, None)

    def _resend(self, lost: Lost) -> None:
        out = lost.outgoing
        if out.cancelled.is_set():
            return
        if out.attempt >= _ATTEMPTS:
            with self._lock:
                job = self._jobs.pop(out.job, None)
            if job is not None:
                job.fail(RuntimeError(f"{lost.why} ({out.attempt} times for the same tasks)"))
            return
        out.attempt += 1
        cast(TaskCoordinator, self._coordinator).batches.put(out)

    def _wait(self, job: Job, label: str | None) -> None:
        """Wait for a job, showing progress; Ctrl-C terminates the pool (stopping its Spark jobs)."""
        progress = Progress(job.tasks, label or "", enabled=self._show_progress and label is not None)
        try:
            while not job.wait_for(lambda: job.finished, 0.2):
                progress.update(job.done_tasks)
        except KeyboardInterrupt:
            self.terminate()
            raise
        progress.update(job.done_tasks, final=True)
        if job.error is not None:
            raise job.error

    def _stream(self, job: Job, ordered: bool) -> Iterator[Any]:
        progress = Progress(job.tasks, "nbtune.Pool imap", enabled=self._show_progress)
        try:
            for n in range(job.chunks):

                def ready(n: int = n) -> bool:
                    return job.error is not None or (n in job.results if ordered else len(job.order) > n)

                while not job.wait_for(ready, 0.2):
                    progress.update(job.done_tasks)
                progress.update(job.done_tasks)
                if job.error is not None:
                    raise job.error
                yield from unpack(job.results[n if ordered else job.order[n]])
        except KeyboardInterrupt:
            self.terminate()
            raise
        progress.update(job.done_tasks, final=True)

    def _fail_all(self, error: BaseException, broken: str | None = None) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
            self._jobs.clear()
            if broken:
                self._broken = broken
        for job in jobs:
            job.cancelled.set()
            job.fail(error)

    def _shutdown(self, cancel: bool) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        _open_pools.discard(self)
        self._state = "terminate" if cancel else self._state
        if cancel:
            executor.cancel()
        else:
            executor.close()
        self._fail_all(PoolTerminated("the pool was terminated before this work finished"))
        self._state = "terminate"


@dataclass
class _Work:
    """A call checked and cut into chunks, not sent yet."""

    job: Job
    func: Callable[..., Any]
    chunks: list[list[Any]]
    call: Call


def _session() -> Any:
    """The active Spark session, or the local one nbtune starts."""
    from nbtune.spark._session import active_session, start_local_session

    return active_session({}) or start_local_session()


def _warn_nested() -> None:
    global _warned_nested
    if not _warned_nested:
        _warned_nested = True
        warnings.warn(
            "nbtune.Pool inside a pool task (or a %%tune trial) runs its work serially in this worker",
            RuntimeWarning,
            stacklevel=3,
        )


def _name(func: Callable[..., Any]) -> str:
    return str(getattr(func, "__qualname__", None) or type(func).__name__)


def _culprit(func: Callable[..., Any], exc: BaseException) -> str:
    """Which variable the function uses that does not pickle, else the pickling error itself."""
    import cloudpickle

    code = getattr(func, "__code__", None)
    candidates: list[tuple[str, Any]] = []
    if code is not None:
        for name, cell in zip(code.co_freevars, getattr(func, "__closure__", None) or (), strict=False):
            with contextlib.suppress(ValueError):  # an empty cell
                candidates.append((name, cell.cell_contents))
        scope = getattr(func, "__globals__", {})
        candidates += [(name, scope[name]) for name in code.co_names if name in scope]
    for name, value in candidates:
        try:
            cloudpickle.dumps(value)
        except Exception as inner:
            return f"it uses {name!r} ({type(value).__name__}), which cannot be pickled ({inner})"
    return f"{type(exc).__name__}: {exc}"


hook_joblib()  # joblib.parallel_backend("nbtune") works once a Pool was imported and joblib is
