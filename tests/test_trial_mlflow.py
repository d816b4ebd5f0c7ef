"""The recording of a trial's own MLflow calls, on the local backend (the notebook's own process).

tests/test_cell_mlflow.py runs the same through Spark, a server and Spark Connect in real notebooks;
here: what a trial must leave as it found it in the notebook's process, nested runs, models, and a
cell that imports MLflow itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from spark_fixtures import local_spark  # noqa: F401 - fixture

import nbtune

CELL = """\
import mlflow
x = 0.5  # tune: uniform(0, 1)
assert mlflow.active_run() is not None
mlflow.log_metric("twice", 2 * x)
mlflow.log_param("p", "cell")
with mlflow.start_run(nested=True, run_name="inner"):
    mlflow.log_metric("inner", x)
mlflow.log_text("hello", "notes/hello.txt")
loss = (x - 0.3) ** 2
"""


def all_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    return client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL, max_results=1000)


def test_a_trial_nests_the_cells_runs_and_leaves_the_notebooks_mlflow_as_it_was(tmp_path):
    uri = f"sqlite:///{tmp_path}/store.db"
    mlflow.set_tracking_uri(uri)
    try:
        mlflow.set_experiment("notebook")
        with mlflow.start_run(run_name="the notebook's own") as own:
            result = nbtune.tune(CELL, max_evals=3, backend="local", tracking_uri=uri, experiment="tuned", quiet=True)
            assert mlflow.active_run().info.run_id == own.info.run_id  # still the notebook's run
            assert mlflow.get_tracking_uri() == uri
            mlflow.log_metric("after", 1.0)  # in the notebook's experiment, as before the search
    finally:
        mlflow.set_tracking_uri(None)
    client = MlflowClient(uri)
    assert client.get_run(own.info.run_id).data.metrics == {"after": 1.0}
    tuned = client.get_experiment_by_name("tuned").experiment_id
    for record in result.records:
        run = client.get_run(record.mlflow_run_id)
        assert run.data.metrics["twice"] == pytest.approx(2 * record.params["x"])
        assert run.data.params["p"] == "cell" and run.data.params["x"] == str(record.params["x"])
        assert [a.path for a in client.list_artifacts(run.info.run_id, "notes")] == ["notes/hello.txt"]
        inner = client.search_runs([tuned], f"tags.mlflow.parentRunId = '{run.info.run_id}'")
        assert [(r.info.run_name, r.info.status, r.data.metrics["inner"]) for r in inner] == [
            ("inner", "FINISHED", pytest.approx(record.params["x"]))
        ]
    runs = all_runs(uri)
    assert len(runs) == 1 + 1 + 3 + 3  # the notebook's, the parent, a child and its nested run per trial
    assert {r.info.status for r in runs} == {"FINISHED"}
    assert not list(tmp_path.glob("**/meta.yaml"))  # no file store was left behind


def test_models_the_cell_logs_become_logged_models_of_the_trials_run(tmp_path):
    cell = textwrap.dedent(
        """\
        import mlflow
        from sklearn.linear_model import LogisticRegression
        c = 1.0  # tune: loguniform(0.1, 10)
        model = LogisticRegression(C=c).fit(X, y)
        mlflow.sklearn.log_model(model, name="classifier")
        loss = 1 - model.score(X, y)
        """
    )
    import numpy as np

    rng = np.random.default_rng(0)
    data = {"X": rng.normal(size=(60, 3)), "y": np.arange(60) % 2}
    uri = f"sqlite:///{tmp_path}/store.db"
    result = nbtune.tune(cell, data, max_evals=2, backend="local", tracking_uri=uri, experiment="m", quiet=True)
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("m").experiment_id
    models = client.search_logged_models([experiment])
    assert sorted(m.source_run_id for m in models) == sorted(r.mlflow_run_id for r in result.records)
    mlflow.set_tracking_uri(uri)  # `models:/` URIs resolve through it
    try:
        for model in models:
            assert model.name == "classifier" and model.status == "READY"
            outputs = client.get_run(model.source_run_id).outputs.model_outputs
            assert [o.model_id for o in outputs] == [model.model_id]
            loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
            assert loaded.predict(data["X"][:4]).shape == (4,)
            assert loaded.metadata.model_id == model.model_id and loaded.metadata.run_id == model.source_run_id
    finally:
        mlflow.set_tracking_uri(None)


def test_a_cell_that_imports_mlflow_itself_is_recorded_from_that_import_on(tmp_path):
    """In a fresh process: MLflow is first imported by the trial (nbtune's import hook starts the recording)."""
    script = textwrap.dedent(
        f"""\
        import sys, nbtune
        cell = {CELL!r}
        result = nbtune.tune(cell, max_evals=2, backend="local", tracking_uri={f"sqlite:///{tmp_path}/s.db"!r},
                             experiment="fresh", quiet=True)
        assert all(r.status == "ok" and r.mlflow_run_id for r in result.records), result.records
        print(",".join(r.mlflow_run_id for r in result.records))
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_ids = done.stdout.strip().splitlines()[-1].split(",")
    client = MlflowClient(f"sqlite:///{tmp_path}/s.db")
    assert all("twice" in client.get_run(run_id).data.metrics for run_id in run_ids)
    assert len(all_runs(f"sqlite:///{tmp_path}/s.db")) == 1 + 2 + 2
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns" / "0").exists()


def test_without_tracking_what_the_cell_logs_is_dropped_not_written_elsewhere(ip, tmp_path):
    result = nbtune.tune(CELL, max_evals=2, backend="local", mlflow=False, quiet=True)
    assert {r.status for r in result.records} == {"ok"} and all(not r.mlflow_runs for r in result.records)
    assert not Path(tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
    assert mlflow.active_run() is None


@pytest.mark.spark
def test_workers_follow_the_notebooks_autologging_from_search_to_search(local_spark, tmp_path):
    cell = textwrap.dedent(
        """\
        from sklearn.linear_model import LogisticRegression
        c = 1.0  # tune: loguniform(0.1, 10)
        loss = 1 - LogisticRegression(C=c).fit(X, y).score(X, y)
        """
    )
    import numpy as np

    data = {"X": np.random.default_rng(0).normal(size=(60, 3)), "y": np.arange(60) % 2}
    uri = f"sqlite:///{tmp_path}/store.db"
    client = MlflowClient(uri)

    def search() -> list:
        result = nbtune.tune(cell, data, max_evals=4, backend="spark", tracking_uri=uri, experiment="a", quiet=True)
        assert result.backend != "local"
        return [client.get_run(r.mlflow_run_id).data for r in result.records]

    mlflow.sklearn.autolog(log_models=False, log_datasets=False)
    try:
        assert all("training_score" in run.metrics and run.params["C"] for run in search())
    finally:
        mlflow.sklearn.autolog(disable=True)
    assert not any("training_score" in run.metrics for run in search())  # the same (warm) workers, turned off


def test_a_cancel_landing_while_mlflow_is_pointed_at_the_trials_store_releases_the_uri_lock(monkeypatch):
    """A cancel is raised in the trial's thread (TrialCancelled, a BaseException) wherever it is, also here."""
    import threading

    from nbtune.trial._mlflow_capture import TrialCapture, uri_lock
    from nbtune.trial._timeouts import TrialCancelled

    def cancelled(*args, **kwargs):
        raise TrialCancelled

    monkeypatch.setattr(mlflow, "start_run", cancelled)  # the cancel lands inside start_run
    before = mlflow.get_tracking_uri()
    raised: list[BaseException] = []

    def trial() -> None:
        try:
            with TrialCapture("trial 0"):
                pass
        except BaseException as exc:
            raised.append(exc)

    thread = threading.Thread(target=trial)
    thread.start()
    thread.join()
    assert [type(e) for e in raised] == [TrialCancelled]
    assert uri_lock.acquire(timeout=1)  # the thread is gone; it must not have kept the lock
    uri_lock.release()
    assert mlflow.get_tracking_uri() == before


def log_twice(x: float) -> float:
    """A helper from another cell: the trial's cell calls it and never names MLflow itself."""
    mlflow.log_metric("twice", 2 * x)
    return (x - 0.3) ** 2


class LoggingCallback:
    def on_epoch_end(self, epoch: int) -> None:
        mlflow.log_metric("epoch", epoch)


def test_only_cells_that_refer_to_mlflow_pay_for_a_recorded_run_once_something_else_loaded_it(tmp_path, monkeypatch):
    import nbtune.trial._mlflow_capture as capture
    from nbtune.trial._mlflow_capture import TrialCapture, names_mlflow

    def code(source: str):
        return compile(source, "<cell>", "exec")

    assert names_mlflow(code("import mlflow\nloss = 1"), {})
    assert names_mlflow(code("def f():\n    mlflow.log_metric('a', 1)\nloss = 1"), {})
    assert names_mlflow(code("loss = helper(0.5)"), {"helper": log_twice})
    assert names_mlflow(code("cb.on_epoch_end(1)"), {"cb": LoggingCallback()})
    assert names_mlflow(code("mf.log_metric('a', 1)"), {"mf": mlflow})
    assert not names_mlflow(code("import numpy as np\nloss = float(np.mean(x))"), {"x": [1.0], "np": os})

    monkeypatch.setattr(capture, "_a_trial_imported_mlflow", False)  # MLflow was loaded by this test module
    with TrialCapture("trial 0", names_mlflow=False) as quiet:
        pass
    assert not quiet.recording and mlflow.active_run() is None
    with TrialCapture("trial 1", names_mlflow=True) as recorded:
        assert mlflow.active_run() is not None
    assert recorded.recording
    recorded.discard()

    # A helper that logs is found through the namespace: its metric lands in the trial's run.
    uri = f"sqlite:///{tmp_path}/store.db"
    cell = "x = 0.5  # tune: uniform(0, 1)\nloss = helper(x)\n"
    result = nbtune.tune(cell, {"helper": log_twice}, max_evals=2, backend="local", tracking_uri=uri, quiet=True)
    client = MlflowClient(uri)
    for record in result.records:
        assert client.get_run(record.mlflow_run_id).data.metrics["twice"] == pytest.approx(2 * record.params["x"])
