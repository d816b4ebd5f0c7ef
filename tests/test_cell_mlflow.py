"""What a tuned cell logs to MLflow itself (fluent calls, Keras autologging) lands in its trial's child run.

A notebook in the Fashion-MNIST demo's shape runs in a real kernel (nbclient): the data and a
`build_model` helper in earlier cells, `mlflow.tensorflow.autolog()` turned on, then `%%tune` cells on
Spark whose body logs a metric, a param, a tag and a matplotlib figure. Tracked to a sqlite store and
to a real `mlflow server` (local Spark), and to sqlite through a Spark Connect server.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from helpers import DATA_DIR
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from spark_fixtures import connect_server  # noqa: F401 - fixture
from test_tracking import MlflowServer, start_mlflow_server

pytestmark = [pytest.mark.spark, pytest.mark.slow]

EVALS = 4
EXPERIMENT = "cell-mlflow"

DATA = """\
import numpy as np
from nbtune.datasets import fashion_mnist

(images, labels), (test_images, test_labels) = fashion_mnist()
x_train, y_train = (images[:400] / 255.0).astype("float32"), labels[:400]
x_test, y_test = (test_images[:200] / 255.0).astype("float32"), test_labels[:200]
"""

BUILD_MODEL = """\
import keras
from keras import layers


def build_model(units, learning_rate):
    model = keras.Sequential([keras.Input((28, 28)), layers.Flatten(), layers.Dense(units, activation="relu"),
                              layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model
"""

# log_models=False: saving a model costs ~16 s a trial here (MLflow infers its pip requirements in a subprocess).
AUTOLOG = "import mlflow\nimport mlflow.tensorflow\n\nmlflow.tensorflow.autolog(log_models=False)\n"

BODY = """\
# Fashion-MNIST, small: a dense classifier's width and learning rate
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import mlflow
import numpy as np

units = 16  # tune: choice(8, 16)
learning_rate = 1e-3  # tune: loguniform(1e-3, 1e-2)

assert mlflow.active_run() is not None  # the trial's own run
model = build_model(units, learning_rate)
history = model.fit(x_train, y_train, epochs=2, batch_size=64, validation_split=0.25, verbose=0)
val_loss = history.history["val_loss"][-1]
test_loss, acc = model.evaluate(x_test, y_test, verbose=0)
predicted = model.predict(x_test, verbose=0).argmax(axis=1)
confusion = np.zeros((10, 10), dtype=int)
np.add.at(confusion, (y_test, predicted), 1)
fig, ax = plt.subplots(figsize=(2, 2))
ax.imshow(confusion, cmap="Blues")
mlflow.log_metric("test_accuracy", acc)
mlflow.log_param("structure", f"dense-{units}")
mlflow.set_tag("stage", "tuning")
mlflow.log_figure(fig, "confusion.png")
plt.close(fig)
"""

REPORT = """\
import json
print(json.dumps({"parent": _tune.parent_run_id, "statuses": [r.status for r in _tune.records],
                  "errors": [r.error for r in _tune.records], "outputs": [r.output for r in _tune.records],
                  "runs": [r.mlflow_run_id for r in _tune.records],
                  "notebook_run": mlflow.active_run() is not None,
                  "notebook_uri": [uri_before, mlflow.get_tracking_uri()]}))
"""


def tune_cell(tracking_uri: str, extra: str = "") -> str:
    flags = f"--backend spark --max-evals {EVALS} --parallelism 2 --seed 3 --metric val_loss {extra}"
    return f"%%tune {flags} --tracking-uri {tracking_uri} --experiment {EXPERIMENT} --quiet\n{BODY}"


def run_notebook(workdir: Path, sources: list[str | Callable[[], str]]) -> list[dict[str, Any]]:
    """Run cells in a fresh kernel in `workdir` (a callable: the source, asked for when its turn comes).

    Returns what each REPORT cell printed.
    """
    import nbformat
    from nbclient import NotebookClient

    workdir.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook()
    client = NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(workdir)}})
    with client.setup_kernel():
        for index, source in enumerate(sources):
            nb.cells.append(nbformat.v4.new_code_cell(source if isinstance(source, str) else source()))
            client.execute_cell(nb.cells[-1], index)
    reports = [cell for cell in nb.cells if cell.source == REPORT]
    return [json.loads(next(o["text"] for o in cell.outputs if o.get("name") == "stdout")) for cell in reports]


def demo_notebook(*tune_cells: str | Callable[[], str], spark_cell: str | None = None) -> list[str | Callable[[], str]]:
    """The demo's shape: load nbtune, (a Spark session), data, a model helper, autologging, then the searches."""
    sources: list[str | Callable[[], str]] = ["%load_ext nbtune", *([spark_cell] if spark_cell else [])]
    sources += [DATA, BUILD_MODEL, AUTOLOG, "uri_before = mlflow.get_tracking_uri()"]
    for cell in tune_cells:
        sources += [cell, REPORT]
    return sources


def kernel_env(mp: pytest.MonkeyPatch) -> None:
    """The kernel (and local Spark's workers) get MLflow's default store, in the notebook's directory."""
    mp.delenv("MLFLOW_TRACKING_URI", raising=False)
    mp.setenv("NBTUNE_DATA_DIR", str(DATA_DIR))
    mp.setenv("NBTUNE_SPARK_MASTER", "local[2]")


def check_tracked(client: MlflowClient, ran: dict[str, Any], *, autoreport: bool) -> None:
    """One parent, a child per trial holding what the cell and autologging logged; nothing stray, nothing open."""
    assert ran["statuses"] == ["ok"] * EVALS, ran["errors"]
    assert not any("nbtune: could not" in out for out in ran["outputs"]), ran["outputs"]
    # The notebook's own MLflow is as it was: no run open, its default store (not a trial's file store)
    before, after = ran["notebook_uri"]
    assert not ran["notebook_run"] and after == before and before.endswith("/nb/mlflow.db")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL, max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert [p.info.run_id for p in parents] == [ran["parent"]]
    kids = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == ran["parent"]]
    assert len(runs) == 1 + EVALS and len(kids) == EVALS
    assert sorted(k.info.run_id for k in kids) == sorted(ran["runs"])
    for kid in kids:
        run_id, data = kid.info.run_id, kid.data
        assert kid.info.status == "FINISHED"
        # The cell's own fluent calls
        assert data.params["structure"] == f"dense-{data.params['units']}"
        assert data.tags["stage"] == "tuning"
        assert 0.0 <= data.metrics["test_accuracy"] <= 1.0
        artifacts = {f.path for f in client.list_artifacts(run_id)}
        assert "confusion.png" in artifacts
        assert Path(client.download_artifacts(run_id, "confusion.png")).read_bytes().startswith(b"\x89PNG")
        # Keras autologging, turned on in an earlier cell, and by nbtune on the workers
        assert data.params["epochs"] == "2" and data.params["batch_size"] == "64"
        assert data.params["opt_name"].lower().startswith("adam")  # adam_1... on a warm worker
        assert "model_summary.txt" in artifacts
        # Autolog only, an entry per epoch (MLflow logs Keras 3's validation_* at step 0 every time)
        assert len(client.get_metric_history(run_id, "validation_loss")) == 2
        loss_steps = sorted(m.step for m in client.get_metric_history(run_id, "loss"))
        # Autolog counts epochs from 0; nbtune's own reports of each epoch (without --no-autoreport) from 1
        assert loss_steps == ([0, 1, 1, 2] if autoreport else [0, 1])
    everything = client.search_runs(
        [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)],
        run_view_type=ViewType.ALL,
        max_results=1000,
    )
    assert len(everything) == 1 + EVALS  # no stray run in any other experiment
    assert not [r.info.run_id for r in everything if r.info.status == "RUNNING"]
    if any(e.experiment_id == "0" for e in client.search_experiments(view_type=ViewType.ALL)):
        assert client.search_runs(["0"], run_view_type=ViewType.ALL) == []


def check_no_default_store(workdir: Path, client: MlflowClient | None = None) -> None:
    """MLflow's default store (`mlflow.db`, a file store's `mlruns`) never appeared in the notebook's directory.

    With `client` (a sqlite store elsewhere), `mlruns` may hold that store's artifacts: MLflow's default
    artifact root for sqlite is `./mlruns`; then it must hold the experiment's folder only.
    """
    assert not (workdir / "mlflow.db").exists()
    mlruns = workdir / "mlruns"
    if client is None or not mlruns.exists():
        assert not mlruns.exists()
        return
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert [p.name for p in mlruns.iterdir()] == [experiment.experiment_id]
    assert not (mlruns / experiment.experiment_id / "meta.yaml").exists()  # not a file store's experiment


@pytest.fixture(scope="module")
def local_spark_notebook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One kernel on local Spark, two searches: to a sqlite store (cold workers), then to an `mlflow server`
    (warm workers), which starts while the first search runs."""
    tmp = tmp_path_factory.mktemp("local")
    (tmp / "store").mkdir()
    sqlite_uri = f"sqlite:///{tmp}/store/mlflow.db"
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_mlflow_server, tmp / "server")
        try:
            with pytest.MonkeyPatch.context() as mp:
                kernel_env(mp)
                cells = demo_notebook(
                    tune_cell(sqlite_uri, "--no-autoreport"), lambda: tune_cell(starting.result().url)
                )
                to_sqlite, to_server = run_notebook(tmp / "nb", cells)
            yield {"dir": tmp / "nb", "sqlite": (sqlite_uri, to_sqlite), "server": (starting.result().url, to_server)}
        finally:
            server: MlflowServer = starting.result()
            server.stop()


def test_each_trial_run_holds_what_the_cell_and_autolog_logged_in_a_sqlite_store(
    local_spark_notebook: dict[str, Any],
) -> None:
    uri, ran = local_spark_notebook["sqlite"]
    client = MlflowClient(uri)
    check_tracked(client, ran, autoreport=False)
    check_no_default_store(local_spark_notebook["dir"], client)


def test_each_trial_run_holds_what_the_cell_and_autolog_logged_on_an_mlflow_server(
    local_spark_notebook: dict[str, Any],
) -> None:
    uri, ran = local_spark_notebook["server"]
    check_tracked(MlflowClient(uri), ran, autoreport=True)


@pytest.mark.connect
def test_each_trial_run_holds_what_the_cell_and_autolog_logged_through_spark_connect(
    connect_server: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel_env(monkeypatch)
    (tmp_path / "store").mkdir()
    uri = f"sqlite:///{tmp_path}/store/mlflow.db"
    spark_cell = "from pyspark.sql import SparkSession\n\n"
    spark_cell += f"spark = SparkSession.builder.remote({connect_server!r}).getOrCreate()\n"
    spark_cell += "assert type(spark).__module__.startswith('pyspark.sql.connect')\n"
    (ran,) = run_notebook(tmp_path / "nb", demo_notebook(tune_cell(uri), spark_cell=spark_cell))
    client = MlflowClient(uri)
    check_tracked(client, ran, autoreport=True)
    check_no_default_store(tmp_path / "nb", client)
