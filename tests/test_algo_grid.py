"""`--algo grid`: every point of a choice / randint / quniform grid once, in-process (no Spark)."""

from __future__ import annotations

import pytest

import nbtune
from nbtune import UsageError

GRID = (
    "k = 'a'  # tune: choice('a', 'b', 'c')\n"
    "n = 1  # tune: randint(1, 3)\n"
    "w = 0.5  # tune: quniform(0, 1, 0.5)\n"
    "loss = {'a': 3, 'b': 1, 'c': 2}[k] + n + w\n"
)


def tune(cell: str, **options: object) -> nbtune.TuneResult:
    return nbtune.tune(cell, backend="local", algo="grid", quiet=True, mlflow=False, **options)


def test_grid_runs_every_point_once_and_max_evals_defaults_to_its_size():
    result = tune(GRID)
    points = [(r.params["k"], r.params["n"], r.params["w"]) for r in result.records]
    assert len(points) == 3 * 2 * 3 == len(set(points))
    assert {p[0] for p in points} == {"a", "b", "c"} and {p[1] for p in points} == {1, 2}
    assert {p[2] for p in points} == {0.0, 0.5, 1.0}
    assert all(isinstance(p[1], int) for p in points)
    assert result.best_params == {"k": "b", "n": 1, "w": 0.0} and result.stop_reason == "completed"


def test_max_evals_below_the_grid_size_runs_that_many_and_above_stops_at_the_grid():
    assert len(tune(GRID, max_evals=5).records) == 5
    assert len(tune(GRID, max_evals=100).records) == 18


def test_a_continuous_parameter_in_a_grid_is_a_usage_error_naming_it():
    cell = "lr = 0.1  # tune: loguniform(1e-4, 1e-1)\nk = 1  # tune: choice(1, 2)\nloss = lr * k\n"
    with pytest.raises(UsageError, match=r"--algo grid: 'lr' is continuous \(loguniform\)"):
        tune(cell)


def test_the_magic_takes_algo_grid():
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython()
    shell.run_line_magic("load_ext", "nbtune")
    shell.run_cell_magic("tune", "--algo grid --backend local --quiet --no-mlflow --out _g", GRID)
    assert len(shell.user_ns["_g"].records) == 18
