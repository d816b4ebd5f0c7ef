"""The demo notebooks run top to bottom with nbclient, on reduced settings injected after their parameters cell."""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers import DATA_DIR, ROOT

import nbtune

NOTEBOOKS = ROOT / "demo_notebooks"


def _load_demo_script() -> Any:
    spec = importlib.util.spec_from_file_location("nbtune_demo_script", ROOT / "scripts" / "demo.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


demo = _load_demo_script()


def read(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def execute(name: str, cwd: Path, **values: Any) -> nbformat.NotebookNode:
    """Run a notebook the way the tests and `make demo` do: parameters injected, widget state kept."""
    nb = demo.with_parameters(read(name), values)
    demo.run_notebook(nb, cwd, log=cwd / "kernel.log", echo=False, timeout=600)
    return nb


def cell(nb: nbformat.NotebookNode, starts: str) -> nbformat.NotebookNode:
    found = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith(starts)]
    assert len(found) == 1, f"{len(found)} cells start with {starts!r}"
    return found[0]


def text(c: nbformat.NotebookNode) -> str:
    parts = []
    for out in c.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out and "text/plain" in out.data:
            parts.append(out.data["text/plain"])
    return "".join(parts)


def shows_a_widget(c: nbformat.NotebookNode) -> bool:
    return any("application/vnd.jupyter.widget-view+json" in out.get("data", {}) for out in c.outputs)


@pytest.fixture
def kernel_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(DATA_DIR))  # the kernels inherit it


@pytest.mark.parametrize("name", sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")))
def test_each_notebook_has_one_parameters_cell_and_no_stored_outputs(name):
    nb = read(name)
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and tagged[0].cell_type == "code"
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


def test_injected_parameters_follow_the_parameters_cell_without_editing_the_file():
    before = (NOTEBOOKS / "01_quickstart.ipynb").read_bytes()
    nb = demo.with_parameters(read("01_quickstart.ipynb"), {"max_evals": 3})
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert nb.cells[index + 1].source == "# Injected parameters\nmax_evals = 3\n"
    assert nb.cells[index + 1].metadata.tags == ["injected-parameters"]
    assert (NOTEBOOKS / "01_quickstart.ipynb").read_bytes() == before


def test_the_fashion_notebook_tunes_the_bundled_template():
    """Notebook 2 shows the template itself; only the size lines moved to its parameters cell."""
    tuned = cell(read("02_fashion_mnist_spark.ipynb"), "%%tune").source
    template = nbtune.templates.get("fashion_mnist")
    for line in template.splitlines()[1:]:
        if re.match(r"(n_train|epochs) = ", line):
            assert line not in tuned
        else:
            assert line in tuned.splitlines()
    # Plus --log-model: the notebook's last part evaluates the best trial's own model, loaded from MLflow.
    header = template.splitlines()[0].replace("--max-evals 32", "--max-evals {max_evals}") + " --log-model"
    assert tuned.splitlines()[0] == header
    # Its execution, on tiny settings, is tested through `make demo` (tests/test_make_demo.py).


@pytest.mark.slow
def test_quickstart_searches_shows_the_dashboard_and_applies_the_best_values(tmp_path, kernel_env):
    nb = execute("01_quickstart.ipynb", tmp_path, max_evals=4)
    search = cell(nb, "%%tune")
    assert shows_a_widget(search)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    best = ast.literal_eval(text(cell(nb, "_tune.best_params")))
    assert set(best) == {"C", "gamma", "kernel"}
    table = text(cell(nb, "trials = _tune.to_pandas()"))
    assert "accuracy" in table and "kernel" in table
    applied = text(cell(nb, "from sklearn.svm import SVC"))
    # --apply-best: the notebook's C, gamma and kernel are the best trial's values.
    assert f"C={best['C']:.4g}, gamma={best['gamma']:.4g}, kernel={best['kernel']!r}" in applied
    accuracy = float(re.search(r"test accuracy of the tuned model: ([\d.]+)", applied).group(1))
    assert 0.0 < accuracy <= 1.0
    assert nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]


@pytest.mark.slow
def test_workshop_shows_the_form_runs_the_same_search_and_resumes_it(tmp_path, kernel_env):
    nb = execute("03_workshop.ipynb", tmp_path, max_evals=2, n_train=1000, epochs=1)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert shows_a_widget(cell(nb, "%%tune --ui"))  # the form; nobody can press Start here
    states = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"].values()
    assert any(s["state"].get("description") == "Start" for s in states)
    first = text(cell(nb, "print(_tune.summary())\n_tune.to_pandas()"))
    assert "2 trials (2 ok)" in first
    resumed = cell(nb, "%%tune --resume")
    assert "resuming run" in text(resumed) and "with 2 earlier trials" in text(resumed)
    after = text(cell(nb, 'print(_tune.summary())\ntrials = _tune.to_pandas()\nprint(f"{len(trials)}'))
    assert "4 trials in all, of which 2 came back from MLflow" in after


@pytest.mark.slow
@pytest.mark.spark
def test_spark_ml_notebook_tunes_the_template_on_the_driver_and_keeps_the_best_pipeline(tmp_path, kernel_env):
    nb = execute("04_spark_ml.ipynb", tmp_path, max_evals=2)
    assert not [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    tuned = cell(nb, "%%tune")
    assert tuned.source.split("\n", 1)[1] == nbtune.templates.get("spark_ml").split("\n", 1)[1]  # the template
    assert re.search(r"2 trials \((2 ok|1 ok, 1 pruned)\)", text(cell(nb, "print(_tune.summary())")))  # --prune asha
    held_out = float(re.search(r"held-out accuracy ([\d.]+)", text(cell(nb, "from sklearn.datasets"))).group(1))
    assert 0.5 < held_out <= 1.0  # the best PipelineModel, kept in memory, transforms a DataFrame
