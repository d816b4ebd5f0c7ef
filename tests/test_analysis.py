"""What a search teaches: parameter importance and its figures (`_tune.importance()`, `_tune.plot.*`)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

import nbtune
from nbtune._errors import SearchFailed
from nbtune.analysis._importance import NotEnoughTrials, min_trials
from nbtune.tracking._tracker import wait_for_background

# The metric depends strongly on x and on the optimiser's name, not at all on `unused`.
CELL = """
x = 0.5       # tune: uniform(-2, 2)
opt = "adam"  # tune: choice("adam", "sgd", "rmsprop")
unused = 1.0  # tune: loguniform(1e-4, 1)
loss = (x - 0.3) ** 2 + (3.0 if opt == "sgd" else 0.0)
"""


@pytest.fixture(scope="module")
def result():
    return nbtune.tune(CELL, {}, max_evals=40, algo="random", seed=3, backend="local", mlflow=False, quiet=True)


def test_importance_ranks_the_parameters_the_metric_depends_on_above_one_it_ignores(result):
    table = result.importance()
    assert list(table.columns) == ["parameter", "importance", "std"]
    assert set(table["parameter"]) == {"x", "opt", "unused"}
    assert table["importance"].sum() == pytest.approx(1.0)
    share = dict(zip(table["parameter"], table["importance"], strict=True))
    assert share["unused"] < 0.05 < min(share["x"], share["opt"])  # a choice of strings counts like a number
    assert table.attrs == {"metric": "loss", "trials": 40}


def test_importance_says_how_many_finished_trials_it_needs_and_why():
    few = nbtune.tune(CELL, {}, max_evals=5, algo="random", seed=1, backend="local", mlflow=False, quiet=True)
    with pytest.raises(NotEnoughTrials, match=r"at least 8 finished trials for 3 parameter\(s\) \(5 so far\)"):
        few.importance()
    assert min_trials(3) == 8 and min_trials(6) == 12


def test_plots_are_figures_to_restyle_and_save(result):
    figures = {
        "parallel_coordinates": result.plot.parallel_coordinates(),
        "importance": result.plot.importance(),
        "history": result.plot.history(),
        "durations": result.plot.durations(),
    }
    for name, fig in figures.items():
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        assert buf.getvalue().startswith(b"\x89PNG"), name
    axes = figures["parallel_coordinates"].axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == ["x", "opt", "unused", "loss"]
    # The best trial's line (and 4 axis lines), and one collection holding a line for each other trial.
    assert len(axes.lines) - 4 == 1 and [len(c.get_segments()) for c in axes.collections] == [39]
    best = [line for line in axes.lines if line.get_label().startswith("best")]
    assert best and best[0].get_label() == f"best (trial {result.best_trial.number})"
    bars = figures["importance"].axes[0]
    assert [t.get_text() for t in bars.get_yticklabels()][-1] == result.importance()["parameter"][0]
    assert "parallel_coordinates()" in repr(result.plot)


def test_a_search_without_a_finished_trial_still_draws():
    broken = "x = 0.5  # tune: uniform(0, 1)\nloss = 1 / 0\n"
    with pytest.raises(SearchFailed) as raised:
        nbtune.tune(broken, {}, max_evals=2, backend="local", mlflow=False, quiet=True)
    failed = raised.value.result
    failed.plot.parallel_coordinates().savefig(io.BytesIO())
    with pytest.raises(NotEnoughTrials):
        failed.importance()


def test_the_parent_run_gets_parallel_coordinates_and_importance(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracked = nbtune.tune(
        CELL, {}, max_evals=12, algo="random", seed=2, backend="local", tracking_uri=uri, experiment="a", quiet=True
    )
    client = MlflowClient(uri)
    assert wait_for_background(60, uri)  # the summary's files follow the cell's return
    names = {a.path for a in client.list_artifacts(tracked.parent_run_id)}
    assert {"parallel_coordinates.png", "importance.png", "importance.csv"} <= names
    table = client.download_artifacts(tracked.parent_run_id, "importance.csv", str(tmp_path))
    assert Path(table).read_text().splitlines()[0] == "parameter,importance,std"
