"""`--resume`: a search continues from its MLflow runs, also in a fresh kernel."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from helpers import run_tune
from mlflow.tracking import MlflowClient
from mlflow_fixtures import fresh_store, migrated_store  # noqa: F401 - fixtures

import nbtune
from nbtune import UsageError
from nbtune.tracking import _tracker

CELL = """x = 0.5                 # tune: uniform(-2, 2)
opt = "adam"            # tune: choice("adam", "sgd", "rms")
n = 2                   # tune: randint(1, 4)
if opt == "rms" and x > 1.5:
    raise RuntimeError("diverged")
loss = (x - 0.7) ** 2 + {"adam": 0.0, "sgd": 0.5, "rms": 1.0}[opt] + n / 10
"""

# A kernel restart: a new Python process with a new IPython shell, knowing nothing but MLflow.
FRESH_KERNEL = """
import json, sys
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
shell.run_line_magic("load_ext", "nbtune")
shell.run_line_magic("config", "TuneMagic.mlflow = True")
shell.run_line_magic("config", "TuneMagic.backend = 'local'")
result = shell.run_cell_magic("tune", sys.argv[1], sys.argv[2])
tune = shell.user_ns["_tune"]
print(json.dumps({
    "same_object": tune is result,
    "parent": tune.parent_run_id,
    "hyperopt_trials": len(tune.trials.trials),
    "hyperopt_losses": [t["result"].get("loss") for t in tune.trials.trials],
    "numbers": [r.number for r in tune.records],
    "params": [r.params for r in tune.records],
    "statuses": [r.status for r in tune.records],
    "run_ids": [r.mlflow_run_id for r in tune.records],
}))
"""


@pytest.fixture(autouse=True)
def _fresh(fresh_store: None) -> None:
    """Every test starts from an empty, migrated MLflow store."""


def in_fresh_kernel(line: str, cell: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", FRESH_KERNEL, line, cell], capture_output=True, text=True, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def child_runs(client: MlflowClient, parent_id: str) -> list:
    parent = client.get_run(parent_id)
    return client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")


@pytest.fixture
def tracked_ip(ip):
    ip.run_line_magic("config", "TuneMagic.mlflow = True")
    return ip


def test_resume_after_a_kernel_restart_continues_the_same_parent_run_to_max_evals(tracked_ip):
    first = run_tune(tracked_ip, "--max-evals 8 --seed 4 --quiet", CELL)
    assert len(first.records) == 8

    resumed = in_fresh_kernel("--resume --max-evals 12 --seed 5 --quiet", CELL)

    client = MlflowClient()
    experiment = client.get_experiment_by_name("nbtune")
    parents = client.search_runs([experiment.experiment_id], "tags.`nbtune.cell_hash` != ''")
    assert [p.info.run_id for p in parents] == [first.parent_run_id] == [resumed["parent"]]
    assert len(child_runs(client, first.parent_run_id)) == 12
    assert resumed["same_object"] and resumed["numbers"] == list(range(12))
    ok_before = [r for r in first.records if r.status == "ok"]
    assert resumed["hyperopt_trials"] == 12 - (8 - len(ok_before))  # hyperopt lists failed trials apart
    assert resumed["params"][:8] == [r.params for r in first.records]  # choices come back as values
    assert resumed["statuses"][:8] == [r.status for r in first.records]
    assert resumed["run_ids"][:8] == [r.mlflow_run_id for r in first.records]
    assert resumed["hyperopt_losses"][: len(ok_before)] == pytest.approx([r.value for r in ok_before])
    assert client.get_run(first.parent_run_id).data.metrics["trials"] == 12


def test_resume_run_id_continues_that_search_even_from_another_cell_variable(tracked_ip):
    first = run_tune(tracked_ip, "--max-evals 4 --seed 1 --out first --quiet", CELL)
    second = run_tune(tracked_ip, f"--resume {first.parent_run_id} --max-evals 6 --out second --quiet", CELL)
    assert second.parent_run_id == first.parent_run_id
    assert [r.number for r in second.records] == list(range(6))
    assert len(child_runs(MlflowClient(), first.parent_run_id)) == 6


def test_resume_when_max_evals_is_already_reached_runs_no_new_trial(tracked_ip):
    first = run_tune(tracked_ip, "--max-evals 3 --seed 1 --quiet", CELL)
    again = run_tune(tracked_ip, "--resume --max-evals 3 --quiet", CELL)
    assert [r.mlflow_run_id for r in again.records] == [r.mlflow_run_id for r in first.records]
    assert again.best_params == first.best_params


def test_resume_with_no_earlier_search_of_the_cell_starts_a_new_one(tracked_ip, capsys):
    result = run_tune(tracked_ip, "--resume --max-evals 3", CELL)
    assert "no earlier search of this cell" in capsys.readouterr().out
    assert len(result.records) == 3 and result.parent_run_id is not None


def test_the_tune_api_resumes_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = nbtune.tune(CELL, max_evals=3, seed=0, quiet=True, backend="local")
    again = nbtune.tune(CELL, max_evals=5, seed=1, quiet=True, backend="local", resume="")
    assert again.parent_run_id == first.parent_run_id and len(again.records) == 5


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("--resume 0123456789abcdef0123456789abcdef", r"--resume 0123456789abcdef0123456789abcdef: no such MLflow run"),
        ("--resume --no-mlflow", r"--resume reads the earlier search from MLflow; drop --no-mlflow"),
        ("--resume --backend sparktrials", r"--resume works with --backend auto, local or spark"),
    ],
)
def test_bad_resume_requests_are_one_line_usage_errors(tracked_ip, line, message):
    with pytest.raises(UsageError, match=message) as info:
        run_tune(tracked_ip, f"{line} --quiet", CELL)
    assert "\n" not in str(info.value)


def test_resume_from_a_store_that_does_not_answer_is_a_usage_error_not_a_hang(tracked_ip, monkeypatch):
    monkeypatch.setattr(_tracker, "STALL_SECONDS", 2.0)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        uri = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there
    with pytest.raises(UsageError, match=f"--resume: MLflow at {uri} did not answer in 2 s"):
        run_tune(tracked_ip, f"--resume --tracking-uri {uri} --quiet", CELL)


def test_resume_of_a_run_whose_space_differs_is_a_usage_error(tracked_ip):
    first = run_tune(tracked_ip, "--max-evals 2 --quiet", CELL)
    other = "y = 1.0  # tune: uniform(0, 1)\nloss = y\n"
    with pytest.raises(UsageError, match="the search space changed since run"):
        run_tune(tracked_ip, f"--resume {first.parent_run_id} --quiet", other)
    trial = first.records[0].mlflow_run_id
    with pytest.raises(UsageError, match="is one trial's run"):
        run_tune(tracked_ip, f"--resume {trial} --quiet", CELL)


@pytest.mark.slow
def test_a_2000_trial_search_resumes_from_a_real_store(tmp_path):
    """Issue 19: every finished trial of a large search comes back, paged, and the search goes on from there."""
    from nbtune.tracking._resume import child_runs

    uri = f"sqlite:///{tmp_path}/big.db"
    cell = "x = 0.5  # tune: uniform(-2, 2)\nloss = (x - 0.7) ** 2\n"
    track = {"tracking_uri": uri, "experiment": "big", "backend": "local", "algo": "random", "quiet": True}
    first = nbtune.tune(cell, max_evals=2000, seed=0, **track)
    assert len(first.records) == 2000 and {r.status for r in first.records} == {"ok"}
    again = nbtune.tune(cell, max_evals=2010, seed=1, resume="", **track)
    assert again.parent_run_id == first.parent_run_id and len(again.records) == 2010
    assert {r.params["x"] for r in first.records} <= {r.params["x"] for r in again.records}
    assert again.best_value <= first.best_value
    client = MlflowClient(uri)
    assert len(child_runs(client, client.get_run(first.parent_run_id))) == 2010
