"""MLflow tracking of `%%tune` searches: runs, params, metrics, artifacts, links, outages."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import run_tune
from mlflow.tracking import MlflowClient
from spark_fixtures import local_spark  # noqa: F401 - fixture

import nbtune
from nbtune.tracking import _tracker
from nbtune.tracking._links import RunLinks, links_for
from nbtune.tracking._tracker import TrackingWarning
from nbtune.tracking._ui_server import free_port, stop_uis, wait_for_http

ONE = "x = 1.0  # tune: uniform(0, 1)\nloss = x\n"
CELL = """# quadratic with a broken corner
x = 0.5            # tune: uniform(0, 1)
k = 1              # tune: choice(1, 2, 3)
print(f"trying x={x:.3f} k={k}")
if k == 3:
    raise ValueError("k=3 is not allowed")
acc = 1 - x
loss = (x - 0.3) ** 2 + k
"""


@dataclass
class MlflowServer:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        """Stop the server and the uvicorn it started (both in the session it leads)."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def start_mlflow_server(root: Path, port: int | None = None) -> MlflowServer:
    """A real `mlflow server` on 127.0.0.1 over a sqlite store in `root` (the same store again if restarted)."""
    root.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log = root / f"server-{time.time_ns()}.log"
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += [
        "--backend-store-uri",
        f"sqlite:///{root}/server.db",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server = MlflowServer(f"http://127.0.0.1:{port}", process, log)
    if not wait_for_http(f"{server.url}/health", 240, process):
        server.stop()
        raise RuntimeError(f"mlflow server did not start:\n{log.read_text()[-2000:]}")
    return server


def children(client: MlflowClient, parent_id: str, experiment_id: str) -> list:
    return client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'", max_results=1000)


def tracking_on(ip) -> None:
    ip.run_line_magic("config", "TuneMagic.mlflow = True")


def status_of(url: str) -> int:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return int(answer.status)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tracked(server: MlflowServer, _shell, tmp_path_factory: pytest.TempPathFactory):
    """One search of CELL (12 trials, some failing) tracked on the server; shared by the tests below."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("tracked"))
        _shell.reset(new_session=False)
        line = f"--max-evals 12 --seed 2 --log-metrics acc --tracking-uri {server.url} --experiment served --quiet"
        _shell.run_line_magic("config", "TuneMagic.mlflow = True")
        try:
            result = run_tune(_shell, line, CELL)
        finally:
            _shell.run_line_magic("config", "TuneMagic.mlflow = False")
    client = MlflowClient(server.url)
    parent = client.get_run(result.parent_run_id)
    return result, client, parent, children(client, parent.info.run_id, parent.info.experiment_id)


def test_the_summary_is_in_when_the_cell_returns_and_its_files_follow(tracked):
    _, client, parent, _ = tracked
    assert parent.info.status == "FINISHED" and parent.data.metrics["trials"] == 12  # the summary's data: at once
    assert _tracker.wait_for_background(60, client.tracking_uri)  # its files: written in the background
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_a_search_is_one_parent_run_with_a_child_run_per_trial(tracked):
    result, client, parent, kids = tracked
    assert client.get_experiment(parent.info.experiment_id).name == "served"
    assert parent.info.run_name == "quadratic with a broken corner"  # named after the cell's first comment
    assert parent.info.status == "FINISHED"
    assert len(kids) == len(result.records) == 12
    assert {r.mlflow_run_id for r in result.records} == {k.info.run_id for k in kids}
    assert {k.data.tags["nbtune.search_id"] for k in kids} == {parent.data.tags["nbtune.search_id"]}


def test_each_child_run_has_params_metric_log_metrics_duration_status_and_host(tracked):
    result, _, _, kids = tracked
    by_id = {k.info.run_id: k for k in kids}
    for record in result.records:
        run = by_id[record.mlflow_run_id]
        assert run.data.params == {"x": str(record.params["x"]), "k": str(record.params["k"])}
        assert run.data.tags["nbtune.status"] == record.status
        assert run.data.tags["nbtune.backend"] == "local" and run.data.tags["nbtune.host"] == record.host
        assert run.data.metrics["duration"] == pytest.approx(record.duration)
        if record.status == "ok":
            assert run.info.status == "FINISHED"
            assert run.data.metrics["loss"] == pytest.approx(record.value)
            assert run.data.metrics["acc"] == pytest.approx(record.log_metrics["acc"])
        else:
            assert run.info.status == "FAILED" and "loss" not in run.data.metrics
            assert run.data.tags["nbtune.error"] == record.error


def test_the_parent_holds_flags_cell_best_value_and_params(tracked):
    result, _, parent, _ = tracked
    assert parent.data.params["max_evals"] == "12" and parent.data.params["metric"] == "loss"
    assert parent.data.params["log_metrics"] == "acc" and parent.data.params["backend"] == "local"
    assert "x = 0.5" in parent.data.tags["mlflow.note.content"]
    assert parent.data.metrics["best_loss"] == pytest.approx(result.best_value)
    assert parent.data.tags["best.k"] == repr(result.best_params["k"])
    assert parent.data.tags["nbtune.best_run_id"] == result.best_trial.mlflow_run_id
    assert parent.data.metrics["trials"] == 12


def test_artifacts_are_the_cell_trials_table_plots_importance_and_failed_trials_output(tracked, tmp_path):
    result, client, parent, _ = tracked
    assert _tracker.wait_for_background(60, client.tracking_uri)
    names = {a.path for a in client.list_artifacts(parent.info.run_id)}
    analysis = {"importance.csv", "importance.png"} if result.counts()["ok"] >= 8 else set()
    assert names == {"cell.py", "trials.csv", "durations.png", "parallel_coordinates.png", *analysis}
    table = Path(client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path))).read_text()
    assert table.splitlines()[0].startswith("trial,status,loss,duration,step,x,k,acc,error,run_id,mlflow_url")
    assert len(table.splitlines()) == 13
    png = Path(client.download_artifacts(parent.info.run_id, "durations.png", str(tmp_path))).read_bytes()
    assert png.startswith(b"\x89PNG")
    failed = next(r for r in result.records if r.status == "failed")
    assert {a.path for a in client.list_artifacts(failed.mlflow_run_id)} == {"traceback.txt", "output.txt"}
    trace = Path(client.download_artifacts(failed.mlflow_run_id, "traceback.txt", str(tmp_path))).read_text()
    assert "ValueError: k=3 is not allowed" in trace
    ok = next(r for r in result.records if r.status == "ok")
    assert client.list_artifacts(ok.mlflow_run_id) == []


def test_every_mlflow_url_is_a_run_page_of_the_server_that_answers_200(tracked, server):
    result, _, parent, _ = tracked
    urls = result.to_pandas()["mlflow_url"].tolist()
    assert len(urls) == 12
    for record, url in zip(sorted(result.records, key=lambda r: r.number), urls, strict=True):
        assert url == f"{server.url}/#/experiments/{parent.info.experiment_id}/runs/{record.mlflow_run_id}"
        assert status_of(url) == 200
    assert result.parent_url.endswith(f"/runs/{parent.info.run_id}") and status_of(result.parent_url) == 200


def test_the_embedded_default_is_sqlite_mlflow_db_in_the_working_directory(ip, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    tracking_on(ip)
    result = run_tune(ip, "--max-evals 4 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    assert (tmp_path / "mlflow.db").exists()
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.get_experiment_by_name("nbtune")
    assert experiment is not None
    assert len(children(client, result.parent_run_id, experiment.experiment_id)) == 4
    assert result.to_pandas()["mlflow_url"].isna().all()  # no UI runs for a local store: no dead links


def test_the_experiment_is_named_after_the_notebook(ip, server):
    tracking_on(ip)
    ip.user_ns["__session__"] = "/home/learner/work/Fashion MNIST.ipynb"
    result = run_tune(ip, f"--max-evals 2 --run-name first --tracking-uri {server.url} --quiet", ONE)
    client = MlflowClient(server.url)
    parent = client.get_run(result.parent_run_id)
    assert client.get_experiment(parent.info.experiment_id).name == "Fashion MNIST"
    assert parent.info.run_name == "first"


def test_no_mlflow_turns_tracking_off(ip, tmp_path):
    tracking_on(ip)
    result = run_tune(ip, "--max-evals 2 --no-mlflow --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    assert result.parent_run_id is None and not (tmp_path / "mlflow.db").exists()


def test_the_tune_api_tracks_with_the_same_options(server):
    result = nbtune.tune(ONE, max_evals=3, backend="local", tracking_uri=server.url, experiment="api", quiet=True)
    client = MlflowClient(server.url)
    assert client.get_run(result.parent_run_id).info.experiment_id == client.get_experiment_by_name("api").experiment_id
    assert all(r.mlflow_run_id for r in result.records)


def quick_http_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's HTTP client gives up on a silent server in seconds instead of minutes (nbtune then retries)."""
    monkeypatch.setattr(_tracker, "STALL_SECONDS", 5.0)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")


def stop_after_a_tracked_trial(srv: MlflowServer) -> None:
    """Stop `srv` once the search's first trial is FINISHED in it."""
    client, deadline = MlflowClient(srv.url), time.monotonic() + 120
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("nbtune")
        if experiment and client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'"):
            break
        time.sleep(0.2)
    srv.stop()


def assert_all_in_the_store(url: str, result: nbtune.TuneResult) -> None:
    client = MlflowClient(url)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    kids = children(client, parent.info.run_id, parent.info.experiment_id)
    assert sorted(k.info.run_id for k in kids) == sorted(r.mlflow_run_id for r in result.records)
    assert {k.info.status for k in kids} == {"FINISHED"}
    assert {float(k.data.metrics["loss"]) for k in kids} == {r.value for r in result.records}
    assert _tracker.wait_for_background(60, client.tracking_uri)
    csv = client.download_artifacts(parent.info.run_id, "trials.csv")  # the summary came after the outage
    assert len(Path(csv).read_text().splitlines()) == len(result.records) + 1


def test_a_server_that_stops_mid_search_and_comes_back_gets_every_trial(ip, tmp_path, monkeypatch, caplog):
    quick_http_retries(monkeypatch)
    root = tmp_path / "flaky"
    srv = start_mlflow_server(root)
    port = int(srv.url.rsplit(":", 1)[1])
    servers = [srv]

    back = threading.Event()

    def outage() -> None:
        stop_after_a_tracked_trial(srv)
        time.sleep(8)  # long enough for nbtune to notice (STALL_SECONDS is 5 here)
        servers.append(start_mlflow_server(root, port))
        back.set()

    try:
        tracking_on(ip)
        start_outage = lambda: threading.Thread(target=outage, daemon=True).start()  # noqa: E731
        ip.user_ns.update(start_outage=start_outage, back=back, finished=[])
        # Trials go on while the server is down; the 10th waits until it is back, so some come after.
        cell = "import time\nx = 1.0  # tune: uniform(0, 1)\nfinished.append(x)\n"
        cell += "if len(finished) == 3:\n    start_outage()\nif len(finished) == 10:\n    back.wait(180)\n"
        cell += "time.sleep(0.5)\nloss = x\n"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = run_tune(ip, f"--max-evals 12 --tracking-uri {srv.url} --quiet", cell)
        tracking = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
        assert len(tracking) == 1 and tracking[0].startswith(f"nbtune: MLflow at {srv.url} is not answering (")
        assert tracking[0].endswith(
            "the search goes on, every trial is in `_tune` and goes to MLflow when it answers again"
        )
        assert not [r for r in caplog.records if "Retrying" in r.getMessage()]  # urllib3's retries stay quiet
        assert len(result.records) == 12 and {r.status for r in result.records} == {"ok"}
        assert_all_in_the_store(srv.url, result)
    finally:
        for server in servers:
            server.stop()


def test_a_server_down_at_the_end_gets_the_rest_in_the_background_and_resume_waits_for_it(ip, tmp_path, monkeypatch):
    quick_http_retries(monkeypatch)
    root = tmp_path / "down"
    srv = start_mlflow_server(root)
    port = int(srv.url.rsplit(":", 1)[1])
    servers = [srv]
    try:
        tracking_on(ip)
        ip.user_ns.update(stop_server=lambda: stop_after_a_tracked_trial(srv), finished=[])
        cell = "import time\nx = 1.0  # tune: uniform(0, 1)\nfinished.append(x)\n"
        cell += "if len(finished) == 3:\n    stop_server()\ntime.sleep(0.2)\nloss = x\n"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.monotonic()
            result = run_tune(ip, f"--max-evals 8 --tracking-uri {srv.url} --quiet", cell)
            waited = time.monotonic() - started
        tracking = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
        assert len(tracking) == 2 and "is not answering (" in tracking[0]
        assert tracking[1].startswith(f"nbtune: MLflow at {srv.url} is not answering: ")
        assert "of 8 trials and the search's summary are not in it yet" in tracking[1]
        assert waited < 90  # the notebook is not held until the store comes back
        assert len(result.records) == 8 and any(r.mlflow_run_id is None for r in result.records)
        servers.append(start_mlflow_server(root, port))
        # What `--resume` does first: wait for the earlier search's writer to catch up.
        assert _tracker.wait_for_background(180)
        assert_all_in_the_store(srv.url, result)
    finally:
        for server in servers:
            server.stop()


def test_an_unreachable_store_warns_and_the_search_completes(ip, monkeypatch):
    quick_http_retries(monkeypatch)
    tracking_on(ip)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        uri = f"http://127.0.0.1:{free_port()}"
        result = run_tune(
            ip, f"--max-evals 5 --tracking-uri {uri} --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n"
        )
    tracking = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(tracking) == 2 and "0 of 5 trials" not in tracking[1] and "5 of 5 trials" in tracking[1]
    assert len(result.records) == 5 and result.best_value is not None and result.parent_run_id is None


def test_a_store_that_fails_fast_warns_once(ip, tmp_path):
    tracking_on(ip)
    (tmp_path / "not-a-db").write_text("this is not sqlite")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_tune(
            ip,
            f"--max-evals 3 --tracking-uri sqlite:///{tmp_path}/not-a-db --quiet",
            "x = 1.0  # tune: uniform(0, 1)\nloss = x\n",
        )
    assert len([w for w in caught if issubclass(w.category, TrackingWarning)]) == 1
    assert len(result.records) == 3


def test_tune_mlflow_ui_serves_the_local_store_and_later_links_point_at_it(ip, capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    tracking_on(ip)
    try:
        ip.run_line_magic("tune_mlflow_ui", f"--port {free_port()}")
        url = capsys.readouterr().out.strip().splitlines()[-1].split()[2]
        assert url.startswith("http://127.0.0.1:") and status_of(f"{url}/health") == 200
        result = run_tune(ip, "--max-evals 2 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
        assert result.parent_url.startswith(f"{url}/#/experiments/") and status_of(result.parent_url) == 200
        assert all(r.mlflow_url.startswith(url) for r in result.records)
        with urllib.request.urlopen(f"{url}/api/2.0/mlflow/runs/get?run_id={result.parent_run_id}") as answer:
            assert result.parent_run_id.encode() in answer.read()  # the UI serves the same store
        ip.run_line_magic("tune_mlflow_ui", "--stop")
        assert "Stopped" in capsys.readouterr().out
    finally:
        stop_uis()


def test_a_script_that_ends_right_after_a_search_waits_for_the_summary_files(tmp_path):
    uri = f"sqlite:///{tmp_path}/s.db"
    script = "import nbtune\n"
    script += f"r = nbtune.tune({ONE!r}, max_evals=3, backend='local', tracking_uri={uri!r}, quiet=True)\n"
    script += "print(r.parent_run_id)\n"  # and the interpreter exits at once
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    parent = done.stdout.strip().splitlines()[-1]
    names = {a.path for a in MlflowClient(uri).list_artifacts(parent)}
    assert {"trials.csv", "durations.png", "parallel_coordinates.png"} <= names


def test_loading_the_extension_does_not_import_mlflow():
    code = "import sys, nbtune.magic; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.spark
def test_tracking_works_with_the_spark_backend(ip, local_spark, tmp_path):
    tracking_on(ip)
    ip.user_ns["spark"] = local_spark
    result = run_tune(ip, "--backend spark --max-evals 4 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    client = MlflowClient()
    parent = client.get_run(result.parent_run_id)
    kids = children(client, parent.info.run_id, parent.info.experiment_id)
    assert len(kids) == 4 and {k.data.tags["nbtune.backend"] for k in kids} == {result.backend}
    assert result.backend != "local"


# -- links (pure; Databricks cannot run here, so its URL form is checked only like this) ----------


def test_a_configured_ui_url_wins_over_the_tracking_uri(monkeypatch):
    monkeypatch.setenv("NBTUNE_MLFLOW_UI_URL", "https://env.example/mlflow")
    assert links_for("http://server:5000", "https://ui.example/").run_url("3", "abc") == (
        "https://ui.example/#/experiments/3/runs/abc"
    )
    assert links_for("sqlite:///x.db").base == "https://env.example/mlflow"


def test_a_tracking_server_links_to_itself_and_a_local_store_to_nothing(monkeypatch):
    monkeypatch.delenv("NBTUNE_MLFLOW_UI_URL", raising=False)
    assert links_for("http://127.0.0.1:5000/").run_url("1", "r") == "http://127.0.0.1:5000/#/experiments/1/runs/r"
    assert links_for("sqlite:///nowhere.db").run_url("1", "r") is None


def test_databricks_links_use_the_workspace_run_url_form(monkeypatch):
    monkeypatch.delenv("NBTUNE_MLFLOW_UI_URL", raising=False)
    links = links_for("databricks", databricks_workspace=("https://adb-123.azuredatabricks.net", "123"))
    assert links.run_url("42", "r1") == "https://adb-123.azuredatabricks.net/ml/experiments/42/runs/r1?o=123"
    assert RunLinks("https://h.cloud.databricks.com", databricks=True).experiment_url("7") == (
        "https://h.cloud.databricks.com/ml/experiments/7"
    )
    assert links_for("databricks://profile", databricks_workspace=(None, None)).run_url("1", "r") is None
