"""--start-from-cell: the first trial runs the values the cell assigns; the algorithm suggests the rest."""

from __future__ import annotations

from typing import Any

import pytest

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune._run import run_search
from nbtune.cell._flags import parse_flags
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import search_space
from nbtune.search._history import History

CELL = """
rate = 0.002      # tune: loguniform(1e-4, 1e-1)
width = 32        # tune: choice(16, 32, 64)
dropout = 0.25    # tune: uniform(0, 0.5)
layers = 3        # tune: randint(1, 6)
batch = 128       # tune: quniform(32, 256, 32)
loss = abs(rate - 0.01) + width / 1000 + dropout + layers + batch / 1000
"""


def options(**given: Any) -> TuneOptions:
    return TuneOptions().replace(**{"mlflow": False, "backend": "local", "quiet": True, "seed": 1, **given})


@pytest.mark.parametrize("algo", ["tpe", "random", "anneal"])
def test_the_first_trial_runs_the_cells_values_and_the_algorithm_the_rest(algo: str) -> None:
    result = run_search(parse_cell(CELL, 1), options(max_evals=4, algo=algo, start_from_cell=True), {})
    first, *rest = result.records
    assert first.params == {"rate": 0.002, "width": 32, "dropout": 0.25, "layers": 3, "batch": 128}
    assert all(r.params != first.params for r in rest)
    assert first.value == pytest.approx(0.008 + 0.032 + 0.25 + 3 + 0.128)
    # The algorithm learned it like any other trial: hyperopt's documents hold the choice as its index.
    assert result.trials.trials[0]["misc"]["vals"]["width"] == [1]


def test_without_the_flag_the_first_trial_is_the_algorithms() -> None:
    result = run_search(parse_cell(CELL, 1), options(max_evals=2), {})
    assert result.records[0].params["rate"] != 0.002


def test_a_resumed_search_does_not_run_the_cells_values_again() -> None:
    space = search_space(parse_cell(CELL).params, None, {})
    result = run_search(parse_cell(CELL, 1), options(max_evals=2, start_from_cell=True), {})
    again = History(result.trials, space, "tpe", 2, first=space.cell_point())  # what --resume builds on
    suggested = again.suggest()
    assert suggested is not None and suggested[1]["rate"] != [0.002]


def test_the_flag_reads_from_the_magic_line() -> None:
    assert parse_flags("--start-from-cell --max-evals 3").start_from_cell
    assert not parse_flags("--max-evals 3").start_from_cell


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("width = 48  # tune: choice(16, 32, 64)", "width = 48 is not one of its choices (16, 32, 64)"),
        ("rate = 0.5  # tune: loguniform(1e-4, 1e-1)", "--start-from-cell: rate = 0.5 is outside loguniform"),
        ("layers = 6  # tune: randint(1, 6)", "--start-from-cell: layers = 6 is outside integer 1 <= x < 6"),
        ("rate = 1 / 3  # tune: uniform(0, 1)", "--start-from-cell: the cell must assign rate a literal value"),
        ("flag = True  # tune: uniform(0, 1)", "flag = True: the cell must assign a number to start from"),
    ],
)
def test_values_a_search_cannot_start_from_are_one_line_errors_with_their_line(line: str, message: str) -> None:
    cell = f"import math\n{line}\nloss = 1.0\n"
    with pytest.raises(TuneUsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        run_search(parse_cell(cell, 1), options(start_from_cell=True), {})
    assert info.value.line == 3  # the %%tune line is 1


def test_start_from_cell_needs_annotations_and_is_not_for_a_grid() -> None:
    with pytest.raises(TuneUsageError, match="--start-from-cell is not for --algo grid"):
        options(start_from_cell=True, algo="grid").validate()
    from hyperopt import hp

    namespace = {"space": {"x": hp.uniform("x", 0, 1)}}
    with pytest.raises(TuneUsageError, match="--start-from-cell needs '# tune:' annotations, not --space"):
        run_search(parse_cell("loss = x\n", 1), options(start_from_cell=True, space="space"), namespace)
