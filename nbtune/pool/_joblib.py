"""The joblib backend "nbtune": `joblib.Parallel` (and scikit-learn's n_jobs) on a `nbtune.Pool`."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from joblib.parallel import (  # type: ignore[import-untyped]
    AutoBatchingMixin,
    ParallelBackendBase,
    register_parallel_backend,
)

from nbtune.pool._channel import Traffic
from nbtune.pool._pool import Pool
from nbtune.pool._results import AsyncResult
from nbtune.pool._task import call_it
from nbtune.spark._worker import serving

_warned_nested = False


class NbtuneBackend(AutoBatchingMixin, ParallelBackendBase):  # type: ignore[misc]
    """One `nbtune.Pool` per `Parallel` call: large arrays go to each worker once per call, not per batch."""

    supports_retrieve_callback = True
    supports_inner_max_num_threads = False
    uses_threads = False
    supports_sharedmem = False
    default_n_jobs = -1

    def __init__(self, spark: Any = None, **backend_kwargs: Any) -> None:
        super().__init__(**backend_kwargs)
        self._spark = spark
        self._pool: Pool | None = None
        self.traffic = Traffic()  # what the pools of this backend sent to the workers, summed over calls

    @property
    def pool(self) -> Pool | None:
        """The pool of the current `Parallel` call, if one runs."""
        return self._pool

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """The slots to use: all of them for -1 (joblib's "all cores"), at most the Spark cores."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        if serving():  # inside a pool task or a %%tune trial: its slot is all this work gets
            _warn_nested()
            return 1
        from nbtune.spark._session import default_parallelism

        slots = default_parallelism(self._session())
        if n_jobs is None or n_jobs < 0:
            return max(1, slots + 1 + (n_jobs or -1))
        return max(1, min(int(n_jobs), slots))

    def configure(
        self, n_jobs: int = 1, parallel: Any = None, prefer: str | None = None, require: str | None = None, **kw: Any
    ) -> int:
        """Start the pool of this `Parallel` call."""
        if require == "sharedmem":
            raise ValueError("the nbtune backend runs tasks in other processes: it cannot share memory")
        self.parallel = parallel
        n = self.effective_n_jobs(n_jobs)
        if n > 1 and self._pool is None:
            self._pool = Pool(n, spark=self._session(), progress=False)
        return n

    def submit(self, func: Callable[[], Any], callback: Callable[[Any], Any] | None = None) -> AsyncResult[Any]:
        """Run one joblib batch on the pool; `callback(future)` when it is back."""
        if self._pool is None:
            raise RuntimeError("the nbtune joblib backend was not configured")
        return self._pool._call_async(call_it, (func,), callback)

    def retrieve_result_callback(self, out: AsyncResult[Any]) -> Any:
        """The batch's results, or its exception re-raised."""
        return out.get()

    def terminate(self) -> None:
        """End the call's pool (gently when it is idle, so Spark keeps its Python workers)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._count(pool)
            pool.__exit__(None, None, None)

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A task failed: stop the rest now."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._count(pool)
            pool.terminate()
        if ensure_ready and self.parallel is not None:
            self.configure(n_jobs=self.parallel.n_jobs, parallel=self.parallel, **self.parallel._backend_kwargs)

    def _count(self, pool: Pool) -> None:
        sent = pool.traffic
        self.traffic.bytes_sent += sent.bytes_sent
        self.traffic.functions_sent += sent.functions_sent
        self.traffic.batches_sent += sent.batches_sent

    def _session(self) -> Any:
        if self._spark is None:
            from nbtune.pool._pool import _session

            self._spark = _session()
        return self._spark


def register() -> None:
    """Make `joblib.parallel_backend("nbtune")` available (done by `%load_ext nbtune` and `nbtune.Pool`)."""
    register_parallel_backend("nbtune", NbtuneBackend)


def _warn_nested() -> None:
    global _warned_nested
    if not _warned_nested:
        _warned_nested = True
        warnings.warn(
            "the nbtune joblib backend inside a pool task or a %%tune trial runs its work serially in this worker",
            RuntimeWarning,
            stacklevel=4,
        )
