"""Reading `# tune:` annotations: the eight distributions, bounds in real units, the body."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hyperopt.pyll import stochastic

from nbtune._errors import TuneUsageError
from nbtune.cell._annotations import annotation_comments
from nbtune.cell._parse import parse_cell
from nbtune.cell._read import read_cell
from nbtune.cell._space import SearchSpace, parse_annotation


def samples(text: str, n: int = 400) -> list:
    param = parse_annotation("x", text)
    space = SearchSpace(params=[param])
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        raw = stochastic.sample(space.hyperopt_space(), rng=rng)
        out.append(param.convert(raw["x"]))
    return out


def test_uniform_stays_in_its_bounds():
    xs = samples("uniform(-2, 3)")
    assert min(xs) >= -2 and max(xs) <= 3 and max(xs) - min(xs) > 4


def test_loguniform_bounds_are_in_real_units_and_spread_over_decades():
    xs = samples("loguniform(1e-5, 1e-1)")
    assert min(xs) >= 1e-5 and max(xs) <= 1e-1
    logs = [math.log10(x) for x in xs]
    assert -3.6 < float(np.median(logs)) < -2.4  # uniform in log space: median near 1e-3


def test_quniform_with_integer_arguments_gives_integers_on_the_grid():
    xs = samples("quniform(16, 256, 16)")
    assert all(isinstance(x, int) and x % 16 == 0 and 16 <= x <= 256 for x in xs)


def test_quniform_with_float_step_gives_floats():
    xs = samples("quniform(0.0, 1.0, 0.25)")
    assert set(xs) <= {0.0, 0.25, 0.5, 0.75, 1.0} and all(isinstance(x, float) for x in xs)


def test_qloguniform_bounds_are_in_real_units():
    xs = samples("qloguniform(10, 1000, 10)")
    assert all(10 <= x <= 1000 and x % 10 == 0 for x in xs)


def test_normal_is_centred_on_mu():
    xs = samples("normal(5, 0.5)")
    assert 4.8 < float(np.mean(xs)) < 5.2


def test_lognormal_takes_its_median_in_real_units():
    xs = samples("lognormal(0.01, 0.5)")
    assert all(x > 0 for x in xs)
    assert 0.008 < float(np.median(xs)) < 0.0125


def test_randint_is_integer_and_excludes_the_upper_bound():
    xs = samples("randint(1, 4)")
    assert set(xs) == {1, 2, 3} and all(isinstance(x, int) for x in xs)


def test_choice_yields_the_values_not_indices():
    xs = samples('choice("small", "medium", 3, None)')
    assert set(xs) == {"small", "medium", 3, None}


def test_choice_accepts_one_list():
    assert parse_annotation("x", "choice([1, 2])").args == (1, 2)


def test_parse_cell_finds_annotated_top_level_assignments_and_removes_them():
    spec = parse_cell(
        "lr = 1e-3  # tune: loguniform(1e-5, 1e-1)\n"
        'note = "# tune: not a comment"\n'
        "units = (\n    64\n)  # tune: choice(32, 64)\n"
        "loss = (lr - 0.01) ** 2 + units\n"
    )
    assert [p.name for p in spec.params] == ["lr", "units"]
    assert spec.params[0].default == 1e-3 and spec.params[1].default == 64
    assert spec.params[0].line == 1 and spec.params[1].line == 5
    assert {"lr", "units"} <= spec.reads and "loss" in spec.binds
    ns: dict = {"lr": 0.5, "units": 32}
    exec(compile(spec.body, "<t>", "exec"), ns)
    assert ns["lr"] == 0.5 and ns["loss"] == pytest.approx((0.5 - 0.01) ** 2 + 32)


def test_line_numbers_count_the_magic_header():
    spec = parse_cell("x = 1\ny = 2  # tune: uniform(0, 1)\nloss = y\n", line_offset=1)
    assert spec.params[0].line == 3


def test_describe_says_how_an_annotation_was_read():
    assert parse_annotation("lr", "loguniform(1e-5, 1e-1)").describe() == "lr: loguniform(lo=1e-05, hi=0.1)"
    assert parse_annotation("n", "randint(1, 4)").describe() == "n: integer 1 <= x < 4"


def test_the_magic_and_the_lab_reader_both_read_the_comments_the_shared_scanner_finds():
    source = 'x = (1 +\n     2)  # tune: uniform(0, 5)\nnote = "# tune: in a string"\ny: int = 3  # tune: randint(9)\n'
    comments = annotation_comments(source, partial=False)
    assert [(c.line, c.column, c.text) for c in comments.values()] == [(2, 9, "uniform(0, 5)"), (4, 12, "randint(9)")]
    assert [(p.line, p.name) for p in parse_cell(source).params] == [(2, "x"), (4, "y")]
    read = read_cell(source)["annotations"]
    assert [(a["line"], a["column"], a["length"], a["name"]) for a in read] == [
        (c.line, c.column, c.length, name) for c, name in zip(comments.values(), "xy", strict=True)
    ]


def test_the_scanner_reads_an_unfinished_cell_up_to_where_it_stops_but_the_magic_refuses_it():
    source = "lr = 0.1  # tune: loguniform(1e-4, 1)\nnote = '''\n# tune: not a comment yet\n"
    assert [c.text for c in annotation_comments(source, partial=True).values()] == ["loguniform(1e-4, 1)"]
    with pytest.raises(TuneUsageError, match=r"^cannot tokenize the cell: "):
        annotation_comments(source, partial=False)
