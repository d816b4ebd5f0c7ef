"""--backend driver on real Spark (local[2], then Spark Connect): Spark ML pipelines tuned from driver threads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import warnings
from typing import Any

import mlflow
import numpy as np
import pytest
from spark_fixtures import active_jobs, connect_server, local_spark, stop_active_session  # noqa: F401 - fixtures

import nbtune
from nbtune import UsageError
from nbtune._events import Listener
from nbtune.tracking._tracker import TrackingWarning

pytestmark = pytest.mark.spark

# The label is the sign of f0+f1+f2+f3: with k=1 the model sees one of four features, and L1 above ~0.3
# zeroes every coefficient. The planted better region: k=4 and a small regParam.
PIPELINE = """
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import VectorAssembler

reg = 1.0  # tune: loguniform(1e-3, 10)
k = 4  # tune: choice(1, 4)
print("fitting", k)
assembler = VectorAssembler(inputCols=["f0", "f1", "f2", "f3"][:k], outputCol="features")
lr = LogisticRegression(regParam=reg, elasticNetParam=1.0, maxIter=10)
model = Pipeline(stages=[assembler, lr]).fit(train)
auc = BinaryClassificationEvaluator().evaluate(model.transform(test))
"""

# slow=1: a fit whose first job runs a Python UDF that sleeps far past any limit; slow=0: a quick count.
SLOW_FIT = """
import time
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import VectorAssembler
from pyspark.sql.functions import udf

slow = 0  # tune: choice(0, 1)
if slow:
    nap = udf(lambda v: time.sleep(120) or v, "double")
    sleepy = train.withColumn("f0", nap("f0"))
    model = Pipeline(stages=[VectorAssembler(inputCols=["f0"], outputCol="features"), LogisticRegression()]).fit(sleepy)
loss = float(train.count() + slow)
"""


def frames(spark: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(240, 4))
    y = (X.sum(axis=1) > 0).astype(float)
    df = spark.createDataFrame(
        [(*map(float, row), float(label)) for row, label in zip(X, y, strict=True)], ["f0", "f1", "f2", "f3", "label"]
    )
    train, test = df.randomSplit([0.7, 0.3], seed=1)
    return {"train": train.cache(), "test": test.cache()}


def tune(spark: Any, cell: str, ns: dict[str, Any], **options: Any) -> nbtune.TuneResult:
    options.setdefault("quiet", True)
    options.setdefault("mlflow", False)
    return nbtune.tune(cell, {"spark": spark, **ns}, **options)


def trial_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nbtune-trial-")]


class CancelWhenRunning(Listener):
    """Presses Cancel from another thread (as the dashboard's button does) once n trials have started."""

    def __init__(self, n: int, after: float) -> None:
        self.n, self.after, self.started, self.info = n, after, 0, None

    def search_started(self, info: Any, result: Any) -> None:
        self.info = info

    def trial_started(self, number: int, params: dict[str, Any]) -> None:
        self.started += 1
        if self.started == self.n:
            threading.Timer(self.after, self.info.cancel).start()


@pytest.fixture(scope="module")
def data(local_spark):
    return frames(local_spark)


def test_auto_picks_the_driver_and_a_pipeline_tuned_with_two_parameters_finds_the_planted_region(
    local_spark, data, capsys
):
    result = tune(local_spark, PIPELINE, data, max_evals=6, metric="auc", mode="max", seed=5, quiet=False)
    assert (
        "nbtune: 'test' is a pyspark DataFrame: trials run on the driver (--backend driver)" in capsys.readouterr().err
    )
    assert result.backend == "driver" and result.parallelism == 2
    assert [r.status for r in result.records] == ["ok"] * 6
    assert {r.params["k"] for r in result.records} == {1, 4}  # both regions were tried
    assert result.best_params["k"] == 4 and result.best_params["reg"] < 0.3 and result.best_value > 0.95
    assert all(r.output == f"fitting {r.params['k']}\n" for r in result.records)  # each trial's own output
    predictions = result.best_model.transform(data["test"])
    assert predictions.count() == data["test"].count() and "prediction" in predictions.columns
    assert trial_threads() == []


def test_a_trial_past_its_timeout_is_stopped_with_its_jobs_while_the_other_trials_go_on(local_spark, data):
    result = tune(local_spark, SLOW_FIT, data, backend="driver", max_evals=4, trial_timeout=5, seed=0)
    slow = [r for r in result.records if r.params["slow"] == 1]
    quick = [r for r in result.records if r.params["slow"] == 0]
    assert slow and quick
    assert all(r.status == "failed" and "--trial-timeout (5 s)" in (r.error or "") for r in slow)
    assert all(r.status == "ok" and r.value == data["train"].count() for r in quick)
    assert active_jobs(local_spark, within=10) == []
    assert trial_threads() == []


def test_cancel_mid_fit_stops_every_trial_and_leaves_no_spark_job(local_spark, data):
    canceller = CancelWhenRunning(2, after=3.0)
    cell = SLOW_FIT.replace("slow = 0  # tune: choice(0, 1)", "slow = 1  # tune: choice(1)")
    result = tune(local_spark, cell, data, backend="driver", max_evals=6, listeners=[canceller])
    assert result.stop_reason == "cancelled"
    assert [r.status for r in result.records] == ["cancelled", "cancelled"]
    assert active_jobs(local_spark, within=10) == []
    assert trial_threads() == []
    assert (
        tune(local_spark, "x = 1.0  # tune: uniform(0, 1)\nloss = train.count() * x\n", data, max_evals=2).counts()[
            "ok"
        ]
        == 2
    )  # the session serves the next search


def test_log_model_best_saves_the_best_pipeline_model_with_the_spark_flavour(local_spark, data):
    result = tune(
        local_spark, PIPELINE, data, max_evals=3, metric="auc", mode="max", seed=5, mlflow=True, log_model="best"
    )
    best = result.best_trial
    assert best is not None and result.best_model_uri == f"runs:/{best.mlflow_run_id}/model"
    assert [r.model_uri for r in result.records if r is not best] == [None, None]  # only the best one
    loaded = mlflow.spark.load_model(result.best_model_uri)
    predicted = loaded.transform(data["test"]).select("prediction").collect()
    assert len(predicted) == data["test"].count() and {row.prediction for row in predicted} <= {0.0, 1.0}


def test_bare_log_model_saves_every_trials_model(local_spark, data):
    result = tune(
        local_spark,
        PIPELINE,
        data,
        backend="driver",
        max_evals=2,
        metric="auc",
        mode="max",
        mlflow=True,
        log_model=True,
    )
    assert all(r.model_uri == f"runs:/{r.mlflow_run_id}/model" for r in result.records)
    assert result.best_model is not None


AFTER_RESET = """
import sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "nbtune")
shell.run_line_magic("reset", "-f")
assert not hasattr(sys.modules["__main__"], "__spec__")  # what %reset does to IPython's __main__
shell.run_cell(
    "from pyspark.sql import SparkSession\\n"
    "spark = SparkSession.builder.master('local[1]').getOrCreate()\\n"
    "train = test = spark.createDataFrame([(float(i % 2), float(i % 2)) for i in range(20)], ['f0', 'label'])\\n"
)
result = shell.run_cell_magic("tune", "--max-evals 1 --metric auc --mode max --log-model best --quiet", CELL)
print("saved:", result.best_model_uri)
assert not hasattr(sys.modules["__main__"], "__spec__")  # left as it was
"""


def test_log_model_best_works_after_percent_reset(tmp_path):
    # pyspark's first import of its Connect modules (MLflow's save imports them) reads __main__.__spec__,
    # which IPython's %reset deletes. In a fresh process: pyspark checks only at that first import.
    cell = PIPELINE.replace('["f0", "f1", "f2", "f3"][:k]', '["f0"]')
    script = tmp_path / "after_reset.py"
    script.write_text(f"CELL = {cell!r}\n" + AFTER_RESET)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"}
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "saved: runs:/" in done.stdout, done.stderr[-3000:]


def test_each_trial_has_its_own_job_tag_and_scheduler_pool(local_spark, data):
    cell = "x = 1.0  # tune: uniform(0, 1)\nsc = spark.sparkContext\n"
    cell += "pool = sc.getLocalProperty('spark.scheduler.pool')\ntags = ','.join(sorted(sc.getJobTags()))\nloss = x\n"
    result = tune(local_spark, cell, data, backend="driver", max_evals=4, log_metrics="pool,tags")
    tags = [r.log_metrics["tags"].strip("'").split(",") for r in result.records]
    assert all(len(t) == 2 for t in tags) and len({t[0] for t in tags}) == 1  # the search's tag on every job
    assert len({t[1] for t in tags}) == 4  # and one tag per trial
    assert {r.log_metrics["pool"].strip("'") for r in result.records} <= {"nbtune-0", "nbtune-1"}
    assert local_spark.sparkContext.getLocalProperty("spark.scheduler.pool") is None  # the notebook's own thread


def test_reports_from_trial_threads_reach_the_pruner(local_spark, data):
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport nbtune\nn = train.count()\n"
    cell += "for s in range(1, 10):\n    nbtune.report(loss=x + 1.0 / s)\nloss = x + 1 / 9\n"
    result = tune(local_spark, cell, data, backend="driver", max_evals=12, prune="asha", seed=1)
    assert result.counts()["pruned"] >= 1 and all(r.curve for r in result.records)


# The planted pipeline, cross-validated: each fold reports the running mean of areaUnderROC.
CROSS_VALIDATED = """
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

reg = 1.0  # tune: loguniform(1e-3, 10)
k = 4  # tune: choice(1, 4)
assembler = VectorAssembler(inputCols=["f0", "f1", "f2", "f3"][:k], outputCol="features")
pipeline = Pipeline(stages=[assembler, LogisticRegression(regParam=reg, elasticNetParam=1.0, maxIter=10)])
cv = CrossValidator(estimator=pipeline, estimatorParamMaps=ParamGridBuilder().build(),
                    evaluator=BinaryClassificationEvaluator(), numFolds=3, seed=0)
fitted = cv.fit(train)
areaUnderROC = fitted.avgMetrics[0]
print("refit and scored")
"""


def cross_validator(spark: Any, folds: int, grid: list[float]) -> tuple[Any, Any]:
    """A CrossValidator over regParam `grid` on frames(), and the DataFrame to fit it on."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.evaluation import BinaryClassificationEvaluator
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    lr = LogisticRegression(maxIter=10)
    pipeline = Pipeline(stages=[VectorAssembler(inputCols=["f0", "f1"], outputCol="features"), lr])
    cv = CrossValidator(
        estimator=pipeline,
        estimatorParamMaps=ParamGridBuilder().addGrid(lr.regParam, grid).build(),
        evaluator=BinaryClassificationEvaluator(),
        numFolds=folds,
        parallelism=2,
        seed=0,
    )
    return cv, frames(spark)["train"]


def test_a_crossvalidator_in_a_trial_reports_the_mean_of_its_folds_so_far(local_spark):
    from nbtune.trial._report import TrialReports, reporting
    from nbtune.trial._sparkml import watch

    watch()
    sent: list[tuple[int, dict[str, float]]] = []
    cv, train = cross_validator(local_spark, 2, [0.01, 5.0])
    with reporting(TrialReports(send=lambda step, m: bool(sent.append((step, m))), metric="areaUnderROC", mode="max")):
        fitted = cv.fit(train)
    assert [step for step, _ in sent] == [1, 2] and all(set(m) == {"areaUnderROC"} for _, m in sent)
    # Step 1: the best map's first fold, one of mean -/+ std for two folds; step 2: the best mean of both.
    firsts = [m + sign * d for m, d in zip(fitted.avgMetrics, fitted.stdMetrics, strict=True) for sign in (-1, 1)]
    assert min(abs(sent[0][1]["areaUnderROC"] - first) for first in firsts) < 1e-9
    assert sent[1][1]["areaUnderROC"] == pytest.approx(max(fitted.avgMetrics), abs=1e-12)
    # Outside a trial, or with --no-autoreport, CrossValidator is left as it is.
    with reporting(
        TrialReports(send=lambda step, m: bool(sent.append((step, m))), metric="x", mode="max", autoreport=False)
    ):
        cv.fit(train)
    cv.fit(train)
    assert len(sent) == 2


def test_a_pruned_crossvalidator_stops_before_its_next_fold_and_its_refit(local_spark):
    from nbtune.trial._report import TrialPruned, TrialReports, reporting
    from nbtune.trial._sparkml import watch

    watch()
    sent: list[int] = []
    cv, train = cross_validator(local_spark, 3, [0.01])
    train.count()  # its own cache, before counting
    cached = len(local_spark.sparkContext._jsc.getPersistentRDDs())
    reports = TrialReports(send=lambda step, m: bool(sent.append(step)) or True, metric="areaUnderROC", mode="max")
    with reporting(reports), pytest.raises(TrialPruned, match="pruned after fold 1 of 3"):
        cv.fit(train)
    assert sent == [1] and reports.pruned and reports.step == 1
    assert len(local_spark.sparkContext._jsc.getPersistentRDDs()) == cached  # the folds are unpersisted
    assert active_jobs(local_spark) == []


def test_pruning_ends_hopeless_cross_validated_trials_after_a_fold(local_spark, data):
    check_pruned_cross_validation(local_spark, data)
    assert active_jobs(local_spark, within=10) == []


def check_pruned_cross_validation(spark: Any, data: dict[str, Any]) -> None:
    result = tune(
        spark,
        CROSS_VALIDATED,
        data,
        backend="driver",
        max_evals=10,
        metric="areaUnderROC",
        mode="max",
        prune="asha",
        seed=1,
    )
    pruned = [r for r in result.records if r.status == "pruned"]
    done = [r for r in result.records if r.status == "ok"]
    assert pruned and done
    assert all(r.step < 3 and "refit and scored" not in r.output for r in pruned)  # no later fold, no refit
    for r in done:  # a full trial's curve: one report per fold, the last one its metric
        assert [step for step, _ in r.curve] == [1, 2, 3] and r.curve[-1][1]["areaUnderROC"] == r.value
    assert result.best_params["k"] == 4 and result.best_value > 0.95
    assert trial_threads() == []


def test_bad_input_is_a_one_line_usage_error(local_spark, data):
    with pytest.raises(
        UsageError,
        match=r"^variable 'test' is a pyspark DataFrame, which lives in the Spark driver .*--backend driver$",
    ):
        tune(local_spark, PIPELINE, data, backend="spark", metric="auc")
    with pytest.raises(UsageError, match=r"^--parallelism 3: this Spark session runs 2 task\(s\) at once"):
        tune(local_spark, PIPELINE, data, backend="driver", parallelism=3, metric="auc")
    with pytest.raises(UsageError, match=r"^--log-model best needs --backend driver"):
        tune(
            local_spark,
            "x = 1.0  # tune: uniform(0, 1)\nloss = x\n",
            {},
            backend="local",
            mlflow=True,
            log_model="best",
        )
    assert active_jobs(local_spark) == []


# Spark Connect: the same backend through a client with no SparkContext (tags are the session's, per thread).


@pytest.fixture(scope="module")
def connect_spark(connect_server, local_spark):
    from pyspark.sql import SparkSession

    stop_active_session()  # the classic session of the tests above
    spark = SparkSession.builder.remote(connect_server).getOrCreate()
    yield spark
    spark.stop()
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)  # later tests start classic Spark


@pytest.mark.connect
def test_a_pipeline_is_tuned_through_spark_connect_and_its_best_model_transforms(connect_spark):
    from mlflow.models import Model
    from pyspark.ml import PipelineModel

    data = frames(connect_spark)
    with warnings.catch_warnings():
        warnings.simplefilter("error", TrackingWarning)  # the model is saved: no warning
        result = tune(
            connect_spark, PIPELINE, data, max_evals=6, metric="auc", mode="max", seed=5, mlflow=True, log_model="best"
        )
    assert result.backend == "driver" and [r.status for r in result.records] == ["ok"] * 6
    assert result.best_params["k"] == 4 and result.best_value > 0.95
    assert "prediction" in result.best_model.transform(data["test"]).columns
    # Logged with MLflow's Spark flavour (and pyfunc); a Connect session loads the saved PipelineModel.
    local = mlflow.artifacts.download_artifacts(result.best_model_uri)
    assert {"spark", "python_function"} <= set(Model.load(local).flavors)
    loaded = PipelineModel.load(os.path.join(local, "sparkml"))
    assert [type(s).__name__ for s in loaded.stages] == ["VectorAssembler", "LogisticRegressionModel"]
    predicted = loaded.transform(data["test"]).select("prediction").collect()
    expected = result.best_model.transform(data["test"]).select("prediction").collect()
    assert predicted == expected


@pytest.mark.connect
def test_pruning_ends_hopeless_cross_validated_trials_on_spark_connect(connect_spark):
    check_pruned_cross_validation(connect_spark, frames(connect_spark))


@pytest.mark.connect
def test_log_model_on_connect_names_the_directory_the_notebook_cannot_see(connect_spark, monkeypatch, tmp_path):
    # As a server on another machine would: it saves under its own working directory, which the notebook's
    # (now tmp_path) is not. One warning says what to set, and the trials go on.
    server_side = os.path.join(os.getcwd(), "nbtune-unseen")
    monkeypatch.setenv("MLFLOW_DFS_TMP", "nbtune-unseen")
    monkeypatch.chdir(tmp_path)
    data = frames(connect_spark)
    try:
        with pytest.warns(TrackingWarning, match="cannot see; set MLFLOW_DFS_TMP to a directory both share"):
            result = tune(
                connect_spark, PIPELINE, data, max_evals=2, metric="auc", mode="max", mlflow=True, log_model="best"
            )
    finally:
        shutil.rmtree(server_side, ignore_errors=True)
    assert [r.status for r in result.records] == ["ok"] * 2 and result.best_model_uri is None


@pytest.mark.connect
def test_timeout_and_cancel_stop_the_trials_jobs_on_spark_connect(connect_spark):
    data = frames(connect_spark)
    result = tune(connect_spark, SLOW_FIT, data, backend="driver", max_evals=4, trial_timeout=5, seed=0)
    assert {r.status for r in result.records if r.params["slow"] == 1} == {"failed"}
    assert {r.status for r in result.records if r.params["slow"] == 0} == {"ok"}
    cell = SLOW_FIT.replace("slow = 0  # tune: choice(0, 1)", "slow = 1  # tune: choice(1)")
    cancelled = tune(connect_spark, cell, data, backend="driver", max_evals=4, listeners=[CancelWhenRunning(2, 3.0)])
    assert cancelled.stop_reason == "cancelled" and trial_threads() == []
    # Both cores of the server were busy with the sleeping tasks: a job now runs only if they were cancelled.
    assert connect_spark.range(10).count() == 10
