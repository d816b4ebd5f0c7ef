"""`make demo` with tiny settings: the Fashion-MNIST notebook run headlessly, its report and the terminal summary."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers import DATA_DIR, ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("demo_output")
    env = {**os.environ, "NBTUNE_DEMO_SMALL": "1", "NBTUNE_DEMO_OUTPUT": str(out), "NBTUNE_DATA_DIR": str(DATA_DIR)}
    # `-o .venv/.installed`: use the environment this suite already runs in rather than reinstall it mid-run.
    proc = subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", "demo"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, out


def test_make_demo_succeeds_and_prints_the_summary(demo_run):
    proc, out = demo_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = proc.stdout
    assert "2 trials of up to 1 epochs on 2000 images" in log
    assert "2/2 trials" in log  # the dashboard's progress, mirrored live on the terminal
    assert re.search(r"best parameters: learning_rate=[\d.e-]+, filters=(16|32), dropout=[\d.]+", log)
    assert re.search(r"best trial: val_loss=[\d.]+, test accuracy=0\.\d+", log)
    assert f"HTML report with the plots: {out / 'fashion_mnist.html'}" in log


def test_make_demo_says_where_the_mlflow_runs_are_and_how_to_open_them(demo_run):
    proc, out = demo_run
    uri = f"sqlite:///{out / 'mlflow.db'}"
    assert f"MLflow runs: {uri}" in proc.stdout
    assert f"ui --backend-store-uri {uri}" in proc.stdout and "%tune_mlflow_ui" in proc.stdout
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")]
    assert len(children) == 2 and len(runs) == 3  # one search run holding one run a trial


def test_make_demo_leaves_an_executed_notebook_and_an_html_report_with_plots(demo_run):
    _, out = demo_run
    nb = nbformat.read(out / "fashion_mnist.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)  # the dashboard
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) >= 4  # sample images, accuracy by learning rate, durations, confusion matrix
    report = (out / "fashion_mnist.html").read_text()
    assert report.count("data:image/png;base64") >= 4 and "Confusion matrix" in report
    assert "nbtune-summary" in report  # the dashboard's static copy, not a widget needing a CDN
    assert "application/vnd.jupyter.widget-state+json" not in report
    trials = (out / "trials.csv").read_text().splitlines()
    assert len(trials) == 3 and trials[0].startswith("trial,status,val_loss")


def test_without_the_dataset_make_demo_stops_at_once_saying_how_to_get_it(tmp_path):
    env = {**os.environ, "NBTUNE_DATA_DIR": str(tmp_path / "missing"), "NBTUNE_DEMO_OUTPUT": str(tmp_path / "out")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    assert "make demo: Fashion-MNIST: NBTUNE_DATA_DIR folder" in proc.stderr
    assert "does not exist" in proc.stderr and "zalandoresearch/fashion-mnist" in proc.stderr


def test_bad_demo_settings_are_refused_before_anything_runs(tmp_path):
    env = {**os.environ, "NBTUNE_DEMO_EVALS": "many", "NBTUNE_DEMO_OUTPUT": str(tmp_path / "out")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0 and "NBTUNE_DEMO_EVALS must be a whole number, got 'many'" in proc.stderr


@pytest.mark.browser
def test_the_html_report_shows_the_dashboard_and_plots_with_the_network_off(demo_run, page):
    _, out = demo_run
    requests: list[str] = []
    page.context.set_offline(True)
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "fashion_mnist.html").as_uri())
    summary = page.locator(".nbtune-summary").first
    summary.wait_for(state="visible")
    assert "2/2</b> trials" in summary.inner_html() and "completed" in summary.inner_text()
    images = page.locator("img")
    assert images.count() >= 6  # the dashboard's plots and the notebook's figures
    assert all(images.nth(i).evaluate("i => i.complete && i.naturalWidth > 50") for i in range(images.count()))
    assert page.get_by_text("Confusion matrix").first.is_visible()
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # nothing asked of the network
