"""nbtune's joblib backend and Pool vs joblibspark, loky (n_jobs=2) and sequential, on one local[2] session.

    .venv/bin/uv pip install --python .venv/bin/python -e ".[bench]"   # joblibspark
    .venv/bin/python benchmarks/bench_sklearn.py --small   # a quick check (about 2 minutes)
    .venv/bin/python benchmarks/bench_sklearn.py           # the issue's sizes (240 fits, 200 MB, 10,000 tasks)
    .venv/bin/python benchmarks/bench_sklearn.py --spark-cap 1000  # joblibspark on 1,000 of the tasks and
                                                           # not on the big X (one Spark job per batch: hours)

(1) GridSearchCV, 5-fold CV over 48 candidates; (2) the same with a large X (only a few columns
are used, so the fits stay short and the shipping shows); (3) Pool.map (joblib.Parallel for the
others) of many 10 ms tasks. Slot efficiency = sequential wall / (2 x wall), where the sequential run
gets one slot's worth of CPU: BLAS held to one thread, as Spark (OMP_NUM_THREADS = task cpus) and loky
hold each worker. Machines here are shared and noisy: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

import cloudpickle
import joblib
import numpy as np
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, PolynomialFeatures, StandardScaler
from threadpoolctl import threadpool_limits

import nbtune
from nbtune.pool import NbtuneBackend
from nbtune.spark._session import start_local_session

P = 2
GRID = {"logisticregression__C": list(np.logspace(-3, 2, 12)), "logisticregression__fit_intercept": [True, False]}
GRID["logisticregression__class_weight"] = [None, "balanced"]  # 12 x 2 x 2 = 48 candidates


def first_columns(X: Any) -> Any:
    return X[:, :40]


def model() -> Any:
    # Pairwise products of the 40 columns: fits of about 0.2 s on one core, the size, from a small X.
    features = (FunctionTransformer(first_columns), PolynomialFeatures(2, include_bias=False), StandardScaler())
    return make_pipeline(*features, LogisticRegression(max_iter=400))


class CountingSpark:
    """Counts joblibspark's batches (each ships its pickled batch, X included, to a new Spark job)."""

    def __init__(self) -> None:
        from joblibspark.backend import SparkDistributedBackend

        self.batches, self.batch_bytes = 0, 0
        original = SparkDistributedBackend.apply_async
        counter = self

        def counted(backend: Any, func: Any, callback: Any = None) -> Any:
            if counter.batches == 0:
                counter.batch_bytes = len(cloudpickle.dumps(func))
            counter.batches += 1
            return original(backend, func, callback)

        SparkDistributedBackend.apply_async = counted  # type: ignore[method-assign]


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = run()
    return time.perf_counter() - start, out


def search(X: Any, y: Any, backend: str | Any, n_jobs: int | None) -> tuple[float, Any]:
    def run() -> Any:
        with joblib.parallel_backend(backend, n_jobs=n_jobs):
            return GridSearchCV(model(), GRID, cv=5).fit(X, y)

    return timed(run)


def nap(_: int) -> float:
    time.sleep(0.01)
    return 0.0


def row(name: str, wall: float, sequential: float, extra: str = "") -> None:
    print(f"  {name:<12} wall {wall:7.2f} s   slot efficiency {sequential / (P * wall):5.2f}   {extra}", flush=True)


def grid_workloads(spark: Any, rows: int, big_mb: int, counting: CountingSpark, spark_big: bool) -> None:
    for title, size in (("GridSearchCV, 48 candidates x 5 folds", 0), (f"the same with a {big_mb} MB X", big_mb)):
        features = max(40, size * 2**20 // (rows * 8)) if size else 40
        X, y = make_classification(n_samples=rows, n_features=40, n_informative=20, random_state=0)
        if features > 40:  # pad with columns the model never reads: only the shipping grows
            X = np.hstack([X, np.zeros((rows, features - 40))])
        print(f"\n{title}: X {X.nbytes / 2**20:.0f} MB", flush=True)
        with threadpool_limits(limits=1):  # one slot, like each parallel worker
            seq, expected = search(X, y, "sequential", 1)
        fit = float(np.mean(expected.cv_results_["mean_fit_time"]))
        row("sequential", seq, seq, f"(mean fit {fit:.2f} s)")
        loky, got = search(X, y, "loky", P)
        row("loky", loky, seq)
        spark_wall = float("nan")
        if spark_big or not size:
            counting.batches = 0  # its first batch is measured again: X changed
            spark_wall, got = search(X, y, "spark", P)
            shipped = counting.batches * counting.batch_bytes / 2**20
            row("joblibspark", spark_wall, seq, f"shipped ~{shipped:.0f} MB ({counting.batches} jobs)")
        else:
            print("  joblibspark  skipped (--spark-cap): it pickles X into every batch's Spark job", flush=True)
        backend = NbtuneBackend(spark=spark)
        ours, got = search(X, y, backend, P)
        same = got.best_params_ == expected.best_params_ and np.array_equal(
            got.cv_results_["mean_test_score"], expected.cv_results_["mean_test_score"]
        )
        shipped = backend.traffic.bytes_sent / 2**20
        row("nbtune", ours, seq, f"shipped {shipped:.0f} MB; wall / joblibspark {ours / spark_wall:.2f}; same {same}")


def map_workload(spark: Any, tasks: int, spark_cap: int | None) -> None:
    print(f"\n{tasks} tasks of 10 ms", flush=True)
    seq = tasks * 0.01  # the work itself: what one slot would need
    loky, _ = timed(lambda: joblib.Parallel(n_jobs=P, backend="loky")(joblib.delayed(nap)(i) for i in range(tasks)))
    row("loky", loky, seq)
    some = min(tasks, spark_cap or tasks)
    with joblib.parallel_backend("spark", n_jobs=P):
        spark_wall, _ = timed(lambda: joblib.Parallel()(joblib.delayed(nap)(i) for i in range(some)))
    row("joblibspark", spark_wall, some * 0.01, f"({some} tasks)" if some < tasks else "")
    spark_wall *= tasks / some  # for the ratio: as if it ran them all at that rate
    with nbtune.Pool(P, spark=spark, progress=False) as pool:
        pool.map(abs, range(P), chunksize=1)  # the slots are up, as after any first map
        ours, _ = timed(lambda: pool.map(nap, range(tasks)))
    row("nbtune Pool", ours, seq, f"wall / joblibspark {ours / spark_wall:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small sizes: check that it runs")
    parser.add_argument("--spark-cap", type=int, help="joblibspark: this many map tasks, and not on the big X")
    args = parser.parse_args()
    os.environ["NBTUNE_SPARK_MASTER"] = f"local[{P}]"
    spark = start_local_session()
    from joblibspark import register_spark

    register_spark()
    counting = CountingSpark()
    print(f"load average {os.getloadavg()}", flush=True)
    rows, big_mb, tasks = (2000, 20, 1000) if args.small else (10_000, 200, 10_000)
    with nbtune.Pool(P, spark=spark, progress=False) as warm:  # Spark's Python workers start (and import) once
        warm.map(lambda _: __import__("sklearn.linear_model"), range(4), chunksize=1)
    grid_workloads(spark, rows, big_mb, counting, spark_big=args.spark_cap is None)
    map_workload(spark, tasks, args.spark_cap)
    print(f"\nload average {os.getloadavg()}", flush=True)
    spark.stop()


if __name__ == "__main__":
    main()
