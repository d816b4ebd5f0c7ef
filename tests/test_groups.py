"""One model per group (`--by KEY --data DF`) on a real local[2] Spark session: results, failures, cancel, bad input."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pandas as pd
import pytest
from spark_fixtures import active_jobs, connect_server, local_spark  # noqa: F401 - fixture

import nbtune
from nbtune import Listener, UsageError

# A small regression per store: y = slope * x + noise, the slope planted per store; the cell fits `w`.
FIT = (
    "w = 1.0  # tune: uniform(0, 5)\n"
    "if sales['store'].iloc[0] == 'broken':\n"
    "    raise ValueError('no data for this store')\n"
    "residual = sales['y'] - w * sales['x']\n"
    "rmse = float((residual ** 2).mean() ** 0.5)\n"
)


def planted(stores: int, rows: int = 40, seed: int = 0) -> tuple[pd.DataFrame, dict[str, float]]:
    """A DataFrame of `stores` groups and the slope planted in each."""
    rng = np.random.default_rng(seed)
    slopes = {f"s{i:02d}": round(0.2 + 4.5 * i / stores, 3) for i in range(stores)}
    frames = []
    for store, slope in slopes.items():
        x = rng.uniform(0, 1, rows)
        frames.append(pd.DataFrame({"store": store, "x": x, "y": slope * x + rng.normal(0, 0.01, rows)}))
    return pd.concat(frames, ignore_index=True), slopes


def by_store(spark, cell, ns, **options):
    options.setdefault("quiet", True)
    options.setdefault("mlflow", False)
    return nbtune.tune(cell, {"spark": spark, **ns}, by="store", data="sales", metric="rmse", **options)


@pytest.mark.spark
def test_each_group_finds_its_planted_best_and_a_failing_group_fails_alone(local_spark):
    data, slopes = planted(49, rows=20)
    broken = pd.DataFrame({"store": "broken", "x": [0.5, 0.6], "y": [1.0, 1.2]})
    sales = local_spark.createDataFrame(pd.concat([data, broken], ignore_index=True))
    result = by_store(local_spark, FIT, {"sales": sales}, max_evals=30, seed=3)  # TPE after 20 random trials

    groups = result.groups
    assert len(groups) == 50 and list(groups.columns[:3]) == ["store", "status", "rmse"]
    assert "w" in groups.columns and result.stop_reason == "completed"
    failed = groups[groups["status"] == "failed"]
    assert failed["store"].tolist() == ["broken"]
    assert failed["error"].iloc[0] == "line 3: ValueError: no data for this store"
    assert set(result.best_params) == set(slopes)  # every other group found a best
    for store, slope in slopes.items():
        assert abs(result.best_params[store]["w"] - slope) < 0.3, store
    trials = result.to_pandas()
    assert len(trials) == 50 * 30 and list(trials.columns[:3]) == ["store", "trial", "status"]
    assert (trials[trials["store"] == "broken"]["status"] == "failed").all()
    assert (groups["trials"] == 30).all() and groups["rows"].sum() == len(data) + 2


@pytest.mark.spark
def test_pandas_data_several_keys_and_a_seed_give_the_same_search_twice(local_spark):
    data, _ = planted(6, rows=10)
    data["region"] = np.where(data.index % 2 == 0, "north", "south")
    cell = FIT.replace("sales", "rows")
    ns = {"spark": local_spark, "rows": data}
    options = dict(by="store,region", data="rows", metric="rmse", max_evals=6, seed=7, quiet=True, mlflow=False)
    first = nbtune.tune(cell, ns, **options)
    again = nbtune.tune(cell, ns, **options)
    assert len(first.groups) == 12 and list(first.groups.columns[:2]) == ["store", "region"]
    assert first.best_params == again.best_params  # each group's stream comes from --seed and its key
    assert all(isinstance(key, tuple) and len(key) == 2 for key in first.best_params)
    assert len({tuple(p.values()) for p in first.best_params.values()}) > 1  # not one stream for all groups


@pytest.mark.spark
def test_with_start_from_cell_every_groups_search_starts_from_the_cells_values(local_spark):
    data, _ = planted(3, rows=10)
    result = by_store(local_spark, FIT, {"sales": local_spark.createDataFrame(data)}, max_evals=3, start_from_cell=True)
    trials = result.to_pandas()
    firsts = trials[trials["trial"] == 0]
    assert len(firsts) == 3 and (firsts["w"] == 1.0).all()
    assert (trials[trials["trial"] > 0]["w"] != 1.0).all()


class CancelAfterGroups(Listener):
    """Press Cancel once n groups have finished (checked as the search polls)."""

    def __init__(self, n: int) -> None:
        self.n, self.info, self.result = n, None, None

    def search_started(self, info, result):
        self.info, self.result = info, result

    def poll(self):
        if sum(g.status == "ok" for g in self.result.outcomes) >= self.n:
            self.info.cancel()


@pytest.mark.spark
def test_cancel_stops_the_spark_job_and_keeps_the_finished_groups(local_spark):
    data, _ = planted(30, rows=5)
    cell = "import time\n" + FIT + "time.sleep(0.2)\n"
    result = by_store(local_spark, cell, {"sales": data}, max_evals=5, listeners=[CancelAfterGroups(2)])
    assert result.stop_reason == "cancelled"
    assert active_jobs(local_spark, within=5) == []
    counts = result.group_counts()
    assert counts["ok"] >= 2 and counts["cancelled"] >= 1 and counts["ok"] + counts["cancelled"] == 30
    done = result.groups[result.groups["status"] == "ok"]
    assert (done["trials"] == 5).all() and set(done["store"]) == set(result.best_params)
    again = by_store(local_spark, FIT, {"sales": data.head(20)}, max_evals=2)  # the session still works
    assert again.group_counts() == {"ok": 4}


@pytest.mark.spark
def test_timeout_stops_the_job_and_keeps_the_finished_groups(local_spark):
    data, _ = planted(40, rows=5)
    cell = "import time\n" + FIT + "time.sleep(0.3)\n"
    result = by_store(local_spark, cell, {"sales": data}, max_evals=4, timeout=8)
    assert result.stop_reason == "timeout"
    assert active_jobs(local_spark, within=5) == []
    assert result.group_counts().get("cancelled", 0) >= 1
    assert len(result.to_pandas()) == 4 * result.group_counts().get("ok", 0)


@pytest.mark.spark
def test_every_group_failing_fails_the_search_with_the_first_error(local_spark):
    data, _ = planted(3, rows=5)
    cell = "w = 1.0  # tune: uniform(0, 1)\nrmse = sales.x.sum() * nope\n"
    with pytest.raises(UsageError, match=r"every group failed; group 's0\d': line 2: NameError: name 'nope'"):
        by_store(local_spark, cell, {"sales": data}, max_evals=3)


@pytest.mark.spark
def test_mlflow_gets_a_parent_run_and_a_child_run_per_group_and_per_trial_with_log_trials(local_spark, tmp_path):
    from mlflow.tracking import MlflowClient

    data, _ = planted(3, rows=5)
    uri = f"sqlite:///{tmp_path}/groups.db"
    result = by_store(
        local_spark, FIT, {"sales": data}, max_evals=2, mlflow=True, tracking_uri=uri, experiment="g", log_trials=True
    )
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("g").experiment_id], max_results=100)
    parent = [r for r in runs if r.info.run_id == result.parent_run_id]
    groups = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == result.parent_run_id]
    assert len(parent) == 1 and parent[0].data.metrics["groups_ok"] == 3
    assert sorted(r.data.params["group.store"] for r in groups) == ["s00", "s01", "s02"]
    assert set(result.groups["run_id"]) == {r.info.run_id for r in groups}
    assert all("w" in r.data.params and "rmse" in r.data.metrics for r in groups)
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") in {g.info.run_id for g in groups}]
    assert len(trials) == 3 * 2 and len(runs) == 1 + 3 + 6
    artifacts = [a.path for a in client.list_artifacts(groups[0].info.run_id)]
    assert "trials.json" in artifacts


RIDGE = (
    "from sklearn.linear_model import Ridge\n"
    "alpha = 1.0  # tune: loguniform(1e-4, 10)\n"
    "if sales['store'].iloc[0] == 'broken':\n"
    "    raise ValueError('no data for this store')\n"
    "model = Ridge(alpha=alpha).fit(sales[['x']], sales['y'])\n"
    "rmse = float(((model.predict(sales[['x']]) - sales['y']) ** 2).mean() ** 0.5)\n"
)


@pytest.mark.spark
def test_log_model_keeps_each_groups_best_model_and_one_router_model_for_all(local_spark, tmp_path, monkeypatch):
    import mlflow

    data, slopes = planted(3, rows=30)
    broken = pd.DataFrame({"store": "broken", "x": [0.5], "y": [1.0]})
    uri = f"sqlite:///{tmp_path}/models.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for the runs:/ URIs below (a global set_tracking_uri would leak)
    sales = pd.concat([data, broken], ignore_index=True)
    track = {"mlflow": True, "tracking_uri": uri, "experiment": "m", "log_model": "all"}
    result = by_store(local_spark, RIDGE, {"sales": sales}, max_evals=4, **track)
    groups = result.groups.set_index("store")
    assert groups.loc["broken", "status"] == "failed" and groups.loc["broken", "model_uri"] is None
    one = mlflow.pyfunc.load_model(groups.loc["s01", "model_uri"])  # a group's own model, in its run
    assert one.predict(pd.DataFrame({"x": [1.0]}))[0] == pytest.approx(slopes["s01"], abs=0.15)

    with warnings.catch_warnings(record=True) as caught:
        router = mlflow.pyfunc.load_model(result.best_model_uri)
    assert not [w for w in caught if "type hints" in str(w.message)]  # MLflow has nothing to nag about
    rows = pd.DataFrame({"store": ["s02", "s00", "s02", "broken"], "x": [1.0, 1.0, 0.5, 1.0]})
    with pytest.warns(UserWarning, match=r"no model for group\(s\) \[\('broken',\)\]"):
        predicted = router.predict(rows)
    assert predicted[:3].tolist() == pytest.approx([slopes["s02"], slopes["s00"], slopes["s02"] / 2], abs=0.15)
    assert np.isnan(predicted[3])
    with pytest.raises(ValueError, match="need the key column"):
        router.predict(pd.DataFrame({"x": [1.0]}))


@pytest.mark.spark
def test_resume_skips_the_groups_already_finished(local_spark, tmp_path):
    data, _ = planted(6, rows=5)
    first_four = data[data["store"].isin(["s00", "s01", "s02", "s03"])]
    track = {"mlflow": True, "tracking_uri": f"sqlite:///{tmp_path}/resume.db", "experiment": "r", "max_evals": 3}
    first = by_store(local_spark, FIT, {"sales": first_four}, **track)
    again = by_store(local_spark, FIT, {"sales": data}, resume="", **track)
    assert again.parent_run_id == first.parent_run_id and again.group_counts() == {"ok": 6}
    before, after = first.groups.set_index("store"), again.groups.set_index("store")
    assert (after.loc[before.index, "run_id"] == before["run_id"]).all()  # not run again
    assert after.loc[before.index, "rmse"].tolist() == pytest.approx(before["rmse"].tolist())
    assert set(after.index) - set(before.index) == {"s04", "s05"}
    assert len(again.to_pandas()) == 6 * 3  # the earlier groups' trials, read back


# -- bad input: one-line UsageErrors before any Spark job (no Spark needed) --------------------------

SALES = pd.DataFrame({"store": ["a", "b"], "x": [1.0, 2.0], "y": [1.0, 2.0]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"by": "store"}, "--by needs --data DF"),
        ({"data": "sales"}, "--data needs --by KEY"),
        ({"by": "store", "data": "sales", "backend": "sparktrials"}, "use --backend auto or spark, not sparktrials"),
        ({"by": "store", "data": "sales", "backend": "local"}, "use --backend auto or spark, not local"),
        ({"by": "store", "data": "sales", "apply_best": True}, "--apply-best cannot assign one value per group"),
        ({"by": "shop", "data": "sales"}, r"--by shop: no such column in sales \(its columns: store, x, y\)"),
        ({"by": "store", "data": "numbers"}, "--data numbers must be a Spark or pandas DataFrame, got list"),
        ({"by": "store", "data": "nothing"}, "--data nothing: no such variable in the notebook"),
        ({"by": "store", "data": "other"}, "the cell never reads 'other' \\(--data\\)"),
        ({"by": "store", "data": "sales", "log_model": "best"}, "--log-model .*: drop --no-mlflow$"),
    ],
)
def test_bad_group_options_are_one_line_usage_errors(options, message):
    ns = {"sales": SALES, "other": SALES, "numbers": [1, 2]}
    with pytest.raises(UsageError, match=message):
        nbtune.tune(FIT, ns, metric="rmse", quiet=True, mlflow=False, **options)


def test_the_magic_parses_by_and_data_and_says_what_is_wrong(ip):
    ip.user_ns["sales"] = SALES
    with pytest.raises(UsageError, match="--apply-best cannot assign one value per group") as caught:
        ip.run_cell_magic("tune", "--by store --data sales --metric rmse --backend auto --apply-best", FIT)
    assert "\n" not in str(caught.value)
    from nbtune.cell._flags import parse_flags

    options = parse_flags("--by store,region --data sales --log-trials")
    assert options.by == ("store", "region") and options.data == "sales" and options.log_trials


def test_a_group_search_does_not_start_spark_for_bad_input():
    threads = threading.active_count()
    with pytest.raises(UsageError):
        nbtune.tune(FIT, {"sales": SALES}, by="store", data="sales", metric="nope", quiet=True, mlflow=False)
    assert threading.active_count() == threads


# -- Spark Connect: last in this module, as it stops the classic session first ------------------------


@pytest.fixture(scope="module")
def connect_spark(connect_server):
    from pyspark.sql import SparkSession
    from spark_fixtures import stop_active_session

    stop_active_session()  # a classic session and a Connect client do not share a process well
    spark = SparkSession.builder.remote(connect_server).getOrCreate()
    yield spark
    spark.stop()
    os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)  # later modules start classic Spark


@pytest.mark.spark
@pytest.mark.connect
def test_a_search_per_group_runs_and_cancels_through_spark_connect(connect_spark):
    data, slopes = planted(6, rows=10)
    sales = connect_spark.createDataFrame(data)
    result = by_store(connect_spark, FIT, {"sales": sales}, max_evals=15, seed=1)
    assert result.group_counts() == {"ok": 6} and set(result.best_params) == set(slopes)
    assert all(abs(result.best_params[s]["w"] - slope) < 0.5 for s, slope in slopes.items())
    slow = "import time\n" + FIT + "time.sleep(0.3)\n"
    stopped = by_store(connect_spark, slow, {"sales": sales}, max_evals=10, listeners=[CancelAfterGroups(1)])
    assert stopped.stop_reason == "cancelled" and stopped.group_counts()["ok"] >= 1


# -- the dashboard ----------------------------------------------------------------------------------


def test_the_groups_table_lists_the_worst_groups_then_the_failed_ones_with_their_errors():
    from nbtune.groups._result import GroupOutcome, GroupsResult
    from nbtune.ui._groups_dashboard import groups_table

    result = GroupsResult("rmse", "min", ["w"], (), keys=["store"])
    for n in range(8):
        result.outcomes.append(GroupOutcome((f"s{n}",), 10, status="ok", best_value=n / 10))
    result.outcomes.append(GroupOutcome(("bad",), 2, status="failed", error="ValueError: <no rows>"))
    table = groups_table(result)
    shown = [cell.split("<")[0] for cell in table.split("<tr><td>")[1:]]
    assert shown == ["store=s7", "store=s6", "store=s5", "store=s4", "store=s3", "store=bad"]
    assert "failed: ValueError: &lt;no rows&gt;" in table


@pytest.mark.spark
def test_in_a_notebook_a_search_per_group_shows_a_live_dashboard_that_ends_complete(tmp_path, monkeypatch):
    import base64

    import nbformat
    from nbclient import NotebookClient

    for leaked in ("SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE"):  # an earlier Spark Connect test's, not the kernel's
        monkeypatch.delenv(leaked, raising=False)
    monkeypatch.setenv("NBTUNE_SPARK_MASTER", "local[2]")
    data, _ = planted(6, rows=8)
    data.to_csv(tmp_path / "sales.csv", index=False)
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext nbtune\nimport pandas as pd\nsales = pd.read_csv('sales.csv')"),
        nbformat.v4.new_code_cell("%%tune --by store --data sales --metric rmse --max-evals 3 --no-mlflow\n" + FIT),
    ]
    NotebookClient(nb, timeout=600, store_widget_state=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    states = nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]

    def by_class(css):
        (found,) = [m for m in states.values() if css in m["state"].get("_dom_classes", [])]
        return found

    bar = by_class("nbtune-groups-progress")["state"]
    assert (bar["value"], bar["max"], bar["bar_style"]) == (6, 6, "success")
    assert by_class("nbtune-groups-status")["state"]["value"].startswith("groups 6/6")
    assert base64.b64decode(by_class("nbtune-groups-histogram")["buffers"][0]["data"]).startswith(b"\x89PNG")
    assert "<caption>worst groups</caption>" in by_class("nbtune-groups-table")["state"]["value"]
    static = [o["data"]["text/html"] for o in nb.cells[1].outputs if "text/html" in o.get("data", {})]
    assert len(static) == 1 and "groups 6/6" in static[0] and "data:image/png;base64," in static[0]
