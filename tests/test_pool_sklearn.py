"""The joblib backend "nbtune" and nbtune.sklearn on local[2] and Spark Connect: same results as sequential."""

from __future__ import annotations

import os

import joblib
import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, cross_validate
from spark_fixtures import active_jobs, connect_server, local_spark, stop_active_session  # noqa: F401 - fixtures

import nbtune
import nbtune.sklearn
from nbtune.pool import NbtuneBackend

pytestmark = pytest.mark.spark

GRID = {"C": [0.01, 0.1, 1.0], "fit_intercept": [True, False]}


@pytest.fixture(scope="module")
def data():
    return make_classification(n_samples=2000, n_features=100, random_state=0)  # X is 1.6 MB


def same_search(a, b):
    assert a.best_params_ == b.best_params_
    assert a.cv_results_["params"] == b.cv_results_["params"]
    scores = [key for key in b.cv_results_ if key.endswith("test_score")]
    assert len(scores) >= 4
    for key in scores:
        np.testing.assert_array_equal(a.cv_results_[key], b.cv_results_[key])


def test_gridsearchcv_under_the_backend_equals_sequential_and_sends_x_once_per_worker(local_spark, data):
    X, y = data
    sequential = GridSearchCV(LogisticRegression(max_iter=300), GRID, cv=5).fit(X, y)
    backend = NbtuneBackend(spark=local_spark)
    with joblib.parallel_backend(backend):
        on_spark = GridSearchCV(LogisticRegression(max_iter=300), GRID, cv=5).fit(X, y)
    same_search(on_spark, sequential)
    # 30 fits in batches, X and y to each of the 2 workers once: well under 3 copies of X
    assert backend.traffic.batches_sent >= 2
    assert X.nbytes <= backend.traffic.bytes_sent < 3 * X.nbytes
    assert active_jobs(local_spark, within=5) == []


def test_the_backend_is_found_by_name_and_runs_any_joblib_parallel(local_spark, data):
    X, y = data
    with joblib.parallel_backend("nbtune"):
        pids = joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(6))
        scores = cross_validate(LogisticRegression(max_iter=300), X, y, cv=3)["test_score"]
    assert os.getpid() not in pids
    np.testing.assert_array_equal(scores, cross_validate(LogisticRegression(max_iter=300), X, y, cv=3)["test_score"])


def test_nbtune_sklearn_drop_ins_equal_scikit_learn(local_spark, data):
    from sklearn.model_selection import RandomizedSearchCV

    X, y = data
    same_search(
        nbtune.sklearn.GridSearchCV(LogisticRegression(max_iter=300), GRID, cv=3).fit(X, y),
        GridSearchCV(LogisticRegression(max_iter=300), GRID, cv=3).fit(X, y),
    )
    space = {"C": [0.01, 0.03, 0.1, 0.3, 1.0]}
    same_search(
        nbtune.sklearn.RandomizedSearchCV(LogisticRegression(max_iter=300), space, n_iter=3, cv=3, random_state=0).fit(
            X, y
        ),
        RandomizedSearchCV(LogisticRegression(max_iter=300), space, n_iter=3, cv=3, random_state=0).fit(X, y),
    )


def test_a_fit_that_raises_surfaces_its_exception_type(local_spark, data):
    class Fails(ClassifierMixin, BaseEstimator):  # defined here: sent by value, as a notebook's class is
        def __init__(self, c=1):
            self.c = c

        def fit(self, X, y):
            raise ArithmeticError(f"cannot fit with c={self.c}")

    X, y = data
    with pytest.raises(ArithmeticError, match="cannot fit with c="), joblib.parallel_backend("nbtune"):
        GridSearchCV(Fails(), {"c": [1, 2, 3]}, cv=2, error_score="raise").fit(X, y)
    assert active_jobs(local_spark, within=5) == []


def test_joblib_inside_a_tune_trial_runs_serially_in_the_worker(local_spark):
    cell = (
        "import joblib, os, warnings\n"
        "x = 1.0  # tune: uniform(0, 1)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    with joblib.parallel_backend('nbtune'):\n"
        "        pids = joblib.Parallel()(joblib.delayed(os.getpid)() for _ in range(3))\n"
        "serial = int(set(pids) == {os.getpid()})\n"
        "warned = int(any('serially' in str(w.message) for w in caught))\n"
        "loss = x\n"
    )
    result = nbtune.tune(
        cell,
        {"spark": local_spark},
        backend="spark",
        max_evals=2,
        log_metrics="serial,warned",
        quiet=True,
        mlflow=False,
    )
    assert [r.status for r in result.records] == ["ok", "ok"], result.records[0].error
    assert all(r.log_metrics["serial"] == 1 for r in result.records)
    assert any(r.log_metrics["warned"] == 1 for r in result.records)


# -- Spark Connect: the same pool through a Connect server ------------------------------------------


@pytest.fixture(scope="module")
def connect_spark(local_spark, connect_server):
    from pyspark.sql import SparkSession

    stop_active_session()  # the classic local session of the tests above
    spark = SparkSession.builder.remote(connect_server).getOrCreate()
    yield spark
    spark.stop()
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)  # later tests start classic Spark


@pytest.mark.connect
def test_pool_map_and_gridsearchcv_through_spark_connect(connect_spark, data):
    assert type(connect_spark).__module__.startswith("pyspark.sql.connect")
    with nbtune.Pool(spark=connect_spark, progress=False) as pool:
        assert pool.processes == 2
        assert pool.map(lambda v: v + 1, range(20)) == list(range(1, 21))
        assert os.getpid() not in set(pool.map(lambda _: os.getpid(), range(4), chunksize=1))
    X, y = data
    with joblib.parallel_backend(NbtuneBackend(spark=connect_spark)):
        on_connect = GridSearchCV(LogisticRegression(max_iter=300), GRID, cv=3).fit(X, y)
    same_search(on_connect, GridSearchCV(LogisticRegression(max_iter=300), GRID, cv=3).fit(X, y))
