"""--log-model: each trial's `model` saved with its MLflow flavour in the trial's run, loadable afterwards."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from helpers import run_tune
from IPython.core.error import UsageError
from spark_fixtures import local_spark  # noqa: F401 - fixture

import nbtune
from nbtune.tracking._tracker import TrackingWarning

SKLEARN_CELL = """
from sklearn.linear_model import LogisticRegression
C = 1.0  # tune: loguniform(0.01, 10)
model = LogisticRegression(C=C).fit(X, y)
loss = -model.score(X, y)
"""

KERAS_CELL = """
import keras
units = 4  # tune: choice(2, 4)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(units), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
loss = model.fit(X, y, epochs=1, verbose=0).history["loss"][-1]
"""


def data():
    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    return X, (X[:, 0] > 0.5).astype(int)


def test_each_trial_keeps_its_scikit_learn_model_in_its_run_and_the_best_one_loads(ip):
    X, y = data()  # MLflow: the test's own store (MLFLOW_TRACKING_URI, set in conftest)
    ip.user_ns.update(X=X, y=y)
    ip.run_line_magic("config", "TuneMagic.mlflow = True")
    run_tune(ip, "--max-evals 3 --log-model --quiet", SKLEARN_CELL)
    result = ip.user_ns["_tune"]
    for record in result.records:
        assert record.model_uri == f"runs:/{record.mlflow_run_id}/model" and record.model is None
        loaded = mlflow.sklearn.load_model(record.model_uri)
        assert pytest.approx(record.params["C"]) == loaded.C  # each run holds its own trial's model
    assert pytest.approx(result.best_params["C"]) == mlflow.sklearn.load_model(result.best_model_uri).C
    assert set(mlflow.pyfunc.load_model(result.best_model_uri).predict(X[:5])) <= {0, 1}


def test_keras_models_trained_on_spark_workers_are_saved_in_the_trials_runs(local_spark):
    X, y = data()
    result = nbtune.tune(
        KERAS_CELL,
        {"spark": local_spark, "X": X, "y": y.astype("float32")},
        backend="spark",
        max_evals=2,
        log_model=True,
        quiet=True,
    )
    assert [r.status for r in result.records] == ["ok", "ok"]
    for record in result.records:
        model = mlflow.keras.load_model(record.model_uri)
        assert model.layers[0].units == record.params["units"]  # each run holds its own trial's model
    assert mlflow.pyfunc.load_model(result.best_model_uri).predict(X[:2].astype("float32")).shape == (2, 1)


def test_log_model_without_mlflow_is_a_usage_error(ip):
    with pytest.raises(UsageError, match="--log-model saves each trial's model in its MLflow run: drop --no-mlflow"):
        run_tune(ip, "--log-model --no-mlflow", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")


def test_a_cell_without_a_model_stops_with_an_error_naming_the_variable(ip):
    ip.run_line_magic("config", "TuneMagic.mlflow = True")
    with pytest.raises(UsageError, match="--log-model saves the variable 'model', which the cell never assigned"):
        run_tune(
            ip,
            "--log-model --quiet",
            "x = 1.0  # tune: uniform(0, 1)\nloss = x\n",
        )


def test_a_model_of_another_kind_warns_once_and_the_search_goes_on(ip):
    ip.run_line_magic("config", "TuneMagic.mlflow = True")
    cell = "x = 1.0  # tune: uniform(0, 1)\nmodel = {'weights': x}\nloss = x\n"
    with pytest.warns(
        TrackingWarning, match="--log-model saves Keras/TensorFlow and scikit-learn models; 'model' is a dict"
    ) as caught:
        run_tune(ip, "--max-evals 3 --log-model --quiet", cell)
    assert len([w for w in caught if "--log-model" in str(w.message)]) == 1
    result = ip.user_ns["_tune"]
    assert [r.status for r in result.records] == ["ok"] * 3 and result.best_model_uri is None


def test_a_resumed_search_knows_where_the_earlier_trials_models_are(ip):
    X, y = data()
    ip.user_ns.update(X=X, y=y)
    ip.run_line_magic("config", "TuneMagic.mlflow = True")
    first = run_tune(ip, "--max-evals 2 --log-model --seed 1 --quiet", SKLEARN_CELL)
    resumed = run_tune(ip, "--resume --max-evals 3 --log-model --quiet", SKLEARN_CELL)
    assert [r.model_uri for r in resumed.records[:2]] == [r.model_uri for r in first.records]
    assert all(r.model_uri for r in resumed.records) and resumed.best_model_uri is not None
