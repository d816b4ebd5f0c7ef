"""Pruning in MLflow: reports as step metrics, pruned runs KILLED, `--resume` keeps curves and pruned trials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import run_tune
from mlflow.tracking import MlflowClient
from mlflow_fixtures import fresh_store, migrated_store  # noqa: F401 - fixtures
from test_tracking import MlflowServer, start_mlflow_server, tracking_on

from nbtune._events import SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.tracking._tracker import MlflowTracker
from nbtune.trial._records import TrialRecord

# A plain loop: the loss falls as 1/step, with a bump at step 3 (ASHA's second rung), so a trial pruned
# there reported its best value (step 2) before its last one and MLflow must show the best.
CELL = """x = 0.5  # tune: uniform(0, 1)
import nbtune
for step in range(1, 7):
    loss = x + 1.0 / step + (0.5 if step == 3 else 0.0)
    nbtune.report(loss=loss, gap=1.0 / step)
"""
FIRST, RESUMED = 8, 10  # trials before and after the resume

# A kernel restart: a new Python process with a new IPython shell, knowing nothing but MLflow.
FRESH_KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "nbtune")
shell.run_line_magic("config", "TuneMagic.mlflow = True")
shell.run_line_magic("config", "TuneMagic.backend = 'local'")
shell.run_cell_magic("tune", sys.argv[1], sys.argv[2])
tune = shell.user_ns["_tune"]
print(json.dumps({
    "parent": tune.parent_run_id,
    "statuses": [r.status for r in tune.records],
    "values": [r.value for r in tune.records],
    "steps": [r.step for r in tune.records],
    "run_ids": [r.mlflow_run_id for r in tune.records],
    "curves": tune.curves().to_dict("records"),
    "hyperopt": [t["result"] for t in tune.trials.trials],
}))
"""


@pytest.fixture(autouse=True)
def _fresh(fresh_store: None) -> None:
    """Every test starts from an empty, migrated MLflow store."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = start_mlflow_server(tmp_path_factory.mktemp("mlflow-server"))
    yield srv
    srv.stop()


@pytest.fixture(params=["embedded", "server"])
def store_line(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The %%tune flags that pick the store: the embedded sqlite one, or a real `mlflow server`."""
    if request.param == "embedded":
        return ""
    server: MlflowServer = request.getfixturevalue("server")
    return f"--tracking-uri {server.url} --experiment {tmp_path.name}"


def in_fresh_kernel(line: str, cell: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_KERNEL, line, cell], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    """A metric's (step, value) points in the order they were logged."""
    points = sorted(client.get_metric_history(run_id, key), key=lambda p: p.timestamp)
    return [(p.step, p.value) for p in points]


def test_reports_are_step_metrics_pruned_runs_end_killed_and_resume_keeps_curves(ip, store_line):
    tracking_on(ip)
    first = run_tune(ip, f"--max-evals {FIRST} --seed 1 --prune asha --quiet {store_line}", CELL)
    statuses = [r.status for r in first.records]
    assert "pruned" in statuses and "ok" in statuses, statuses  # else the test would prove little
    assert any(r.status == "pruned" and r.step == 3 for r in first.records), "a trial pruned after its bump"

    client = MlflowClient(_uri(store_line))
    for r in first.records:
        run = client.get_run(r.mlflow_run_id)
        reported = [(step, m["loss"]) for step, m in r.curve]
        assert [step for step, _ in reported] == list(range(1, r.step + 1))
        # Every report, then the trial's value at its last step (MLflow's value of the run).
        assert history(client, r.mlflow_run_id, "loss") == [*reported, (r.step, r.value)]
        assert history(client, r.mlflow_run_id, "gap") == [(step, m["gap"]) for step, m in r.curve]
        assert run.data.metrics["loss"] == r.value
        assert run.data.tags["nbtune.status"] == r.status
        assert run.data.tags["nbtune.step"] == str(r.step)
        if r.status == "pruned":
            assert run.info.status == "KILLED"
            assert r.value == min(loss for _, loss in reported)
        else:
            assert run.info.status == "FINISHED" and r.step == 6
    bumped = next(r for r in first.records if r.status == "pruned" and r.step == 3)
    assert client.get_run(bumped.mlflow_run_id).data.metrics["loss"] == bumped.curve[1][1]["loss"]  # its best

    resumed = in_fresh_kernel(f"--resume --max-evals {RESUMED} --seed 2 --prune asha --quiet {store_line}", CELL)

    assert resumed["parent"] == first.parent_run_id
    assert resumed["statuses"][:FIRST] == statuses
    assert resumed["values"][:FIRST] == [r.value for r in first.records]
    assert resumed["steps"][:FIRST] == [r.step for r in first.records]
    assert resumed["run_ids"][:FIRST] == [r.mlflow_run_id for r in first.records]
    assert [c for c in resumed["curves"] if c["trial"] < FIRST] == first.curves().to_dict("records")
    assert {c["trial"] for c in resumed["curves"]} == set(range(RESUMED))  # the new trials report too
    # hyperopt learns the resumed trials (pruned ones with their best value) exactly as it did live.
    assert resumed["hyperopt"][:FIRST] == [t["result"] for t in first.trials.trials]
    children = client.search_runs(
        [client.get_run(first.parent_run_id).info.experiment_id], f"tags.mlflow.parentRunId = '{first.parent_run_id}'"
    )
    assert len(children) == RESUMED


def _uri(store_line: str) -> str | None:
    """The tracking URI a `store_line` names (None: the embedded store conftest points MLflow at)."""
    words = store_line.split()
    return words[words.index("--tracking-uri") + 1] if "--tracking-uri" in words else None


def test_reports_that_come_before_the_trial_start_open_its_run(tmp_path):
    options = TuneOptions(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", experiment="direct")
    source = "x = 0.5  # tune: uniform(0, 1)\nloss = x\n"
    info = SearchInfo(name="direct", options=options, backend="local", parallelism=1, param_names=["x"], source=source)
    result = TuneResult("loss", "min", ["x"])
    tracker = MlflowTracker(options)
    tracker.search_started(info, result)
    tracker.trial_reported(0, 1, {"loss": 2.0})  # no trial_started: the child run opens at the first report
    tracker.trial_reported(0, 2, {"loss": 1.5})
    curve = [(1, {"loss": 2.0}), (2, {"loss": 1.5})]
    record = TrialRecord(
        number=0, tid=0, params={"x": 0.5}, vals={"x": [0.5]}, status="pruned", value=1.5, step=2, curve=curve
    )
    result.records.append(record)
    tracker.trial_finished(record)
    result.stop_reason = "completed"
    tracker.search_finished(result)

    client = MlflowClient(options.tracking_uri)
    assert record.mlflow_run_id is not None
    run = client.get_run(record.mlflow_run_id)
    assert run.data.tags["mlflow.parentRunId"] == result.parent_run_id
    assert history(client, record.mlflow_run_id, "loss") == [(1, 2.0), (2, 1.5), (2, 1.5)]
    assert run.info.status == "KILLED" and run.data.tags["nbtune.status"] == "pruned"
    assert json.loads(run.data.tags["nbtune.curve"]) == {"reports": 2, "keys": ["loss"]}
    parent = client.get_run(result.parent_run_id)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert len(children) == 1
