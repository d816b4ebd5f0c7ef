"""`%%tune` end to end on the local backend, in a real IPython shell."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from helpers import run_tune

import nbtune
from nbtune import TuneResult, UsageError

QUADRATIC = """
x = 0.0           # tune: uniform(-5, 5)
shape = "flat"    # tune: choice("flat", "bowl", "spike")
lr = 1e-2         # tune: loguniform(1e-5, 1e-1)
penalty = {"flat": 1.0, "bowl": 0.0, "spike": 2.0}[shape]
loss = (x - 1.5) ** 2 + penalty + (math.log10(lr) + 3) ** 2
"""


def test_cell_without_the_magic_is_plain_python_with_its_defaults(ip):
    ip.run_cell("import math")
    ip.run_cell(QUADRATIC, store_history=False).raise_error()
    assert ip.user_ns["x"] == 0.0 and ip.user_ns["shape"] == "flat"
    assert ip.user_ns["loss"] == pytest.approx(1.5**2 + 1 + 1)


def test_search_finds_the_optimum_region_of_a_quadratic_in_60_evaluations(ip):
    ip.run_cell("import math")
    result = run_tune(ip, "--max-evals 60 --seed 3 --quiet", QUADRATIC)
    assert isinstance(result, TuneResult) and ip.user_ns["_tune"] is result
    best = result.best_params
    assert best["shape"] == "bowl"
    assert abs(best["x"] - 1.5) < 0.5
    assert 1e-4 < best["lr"] < 1e-2
    assert result.best_value < 0.5
    assert len(result.trials.trials) == 60


def test_best_params_are_values_and_best_value_keeps_the_metric_sign_in_max_mode(ip):
    cell = 'size = "s"  # tune: choice("s", "m", "l")\nscore = {"s": 1, "m": 3, "l": 2}[size]\n'
    result = run_tune(ip, "--max-evals 12 --metric score --mode max --seed 0 --quiet", cell)
    assert result.best_params == {"size": "m"}
    assert result.best_value == 3
    assert min(t["result"]["loss"] for t in result.trials.trials) == -3  # hyperopt minimises -score


def test_to_pandas_has_the_documented_columns(ip):
    cell = "a = 1  # tune: randint(0, 5)\nb = 0.5  # tune: uniform(0, 1)\nacc = a * b\nloss = -acc\n"
    df = run_tune(ip, "--max-evals 5 --log-metrics acc --quiet", cell).to_pandas()
    assert list(df.columns) == [
        "trial",
        "status",
        "loss",
        "duration",
        "step",
        "a",
        "b",
        "acc",
        "error",
        "run_id",
        "mlflow_url",
    ]
    assert len(df) == 5 and set(df["status"]) == {"ok"}
    assert (df["acc"] == -df["loss"]).all()
    assert df["a"].map(type).eq(int).all()


def test_out_names_the_result_variable_and_apply_best_assigns_the_values(ip):
    cell = "x = 3.0  # tune: uniform(0, 1)\nloss = (x - 0.25) ** 2\n"
    result = run_tune(ip, "--max-evals 15 --out search --apply-best --quiet", cell)
    assert ip.user_ns["search"] is result and "_tune" not in ip.user_ns
    assert ip.user_ns["x"] == result.best_params["x"] != 3.0


def test_config_sets_the_defaults_of_later_searches(ip):
    ip.run_line_magic("config", "TuneMagic.max_evals = 4")
    ip.run_line_magic("config", "TuneMagic.metric = 'err'")
    result = run_tune(ip, "--quiet", "x = 1.0  # tune: uniform(0, 1)\nerr = x\n")
    assert len(result.records) == 4 and result.metric == "err"


def test_the_same_seed_repeats_the_search_and_another_seed_does_not(ip):
    cell = "x = 1.0  # tune: uniform(0, 1)\nk = 2  # tune: choice(1, 2, 3)\nloss = x * k\n"
    runs = [run_tune(ip, f"--max-evals 25 --seed {s} --quiet", cell) for s in (7, 7, 8)]
    params = [[r.params for r in run.records] for run in runs]
    assert params[0] == params[1] != params[2]


@pytest.mark.parametrize("algo", ["tpe", "random", "anneal"])
def test_each_algorithm_runs_a_search(ip, algo):
    result = run_tune(ip, f"--algo {algo} --max-evals 8 --seed 1 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    assert len(result.records) == 8 and result.best_value < 0.5


def test_the_body_reads_notebook_variables_and_functions(ip):
    ip.run_cell("import math\nOFFSET = 2.0\ndef f(v):\n    return math.sqrt(v) + OFFSET\n")
    result = run_tune(ip, "--max-evals 3 --quiet", "v = 4.0  # tune: uniform(1, 9)\nloss = f(v)\n")
    assert all(r.value == pytest.approx(math.sqrt(r.params["v"]) + 2.0) for r in result.records)


def test_a_trial_gets_a_fresh_namespace_and_leaves_the_notebook_alone(ip):
    ip.run_cell("counter = 0")
    cell = "x = 1.0  # tune: uniform(0, 1)\ncounter = counter + 1\nloss = counter\n"
    result = run_tune(ip, "--max-evals 4 --quiet", cell)
    assert [r.value for r in result.records] == [1, 1, 1, 1]
    assert ip.user_ns["counter"] == 0 and "loss" not in ip.user_ns


def test_printing_in_the_body_is_captured_per_trial_not_shown(ip, capsys):
    cell = 'x = 1.0  # tune: uniform(0, 1)\nprint("epoch done", x)\nloss = x\n'
    result = run_tune(ip, "--max-evals 3 --quiet", cell)
    assert "epoch done" not in capsys.readouterr().out
    assert all(r.output == f"epoch done {r.params['x']}\n" for r in result.records)


def test_a_failing_trial_is_recorded_with_its_error_and_the_search_goes_on(ip):
    cell = "x = 1.0  # tune: uniform(0, 1)\nif x > 0.5:\n    raise ValueError('too big')\nloss = x\n"
    result = run_tune(ip, "--max-evals 20 --seed 2 --quiet", cell)
    failed = [r for r in result.records if r.status == "failed"]
    assert failed and len(result.records) == 20
    assert failed[0].error == "line 4: ValueError: too big"  # line 1 is the %%tune header
    assert "raise ValueError('too big')" in failed[0].traceback and "nbtune" not in failed[0].traceback
    df = result.to_pandas()
    assert set(df.loc[df.status == "failed", "error"]) == {"line 4: ValueError: too big"}
    assert result.best_params["x"] <= 0.5


def test_max_failures_stops_the_search(ip):
    ip.run_cell("calls = []")
    cell = "x = 1.0  # tune: uniform(0, 1)\ncalls.append(x)\nif len(calls) % 2 == 0:\n    raise ValueError('no')\n"
    cell += "loss = x\n"
    result = run_tune(ip, "--max-evals 40 --max-failures 3 --seed 0 --quiet", cell)
    assert [r.status for r in result.records] == ["ok", "failed"] * 3
    assert result.stop_reason == "max-failures"


def test_a_search_where_every_trial_fails_raises_with_the_first_failure_and_keeps_the_trials(ip):
    cell = "x = 1.0  # tune: uniform(0, 1)\nloss = 1 / 0\n"
    with pytest.raises(UsageError, match=r"every trial failed; the first with: line 3: ZeroDivisionError"):
        run_tune(ip, "--max-evals 30 --quiet", cell)
    result = ip.user_ns["_tune"]
    assert 3 <= len(result.records) < 30  # a broken cell stops early instead of failing 30 times
    assert result.records[0].traceback


def test_trial_timeout_fails_one_trial_and_the_search_goes_on(ip):
    ip.run_cell("import time")
    cell = "x = 1.0  # tune: uniform(0, 1)\nif x > 0.6:\n    time.sleep(30)\nloss = x\n"
    result = run_tune(ip, "--max-evals 12 --trial-timeout 0.5 --seed 4 --quiet", cell)
    slow = [r for r in result.records if r.params["x"] > 0.6]
    assert slow and all(r.status == "failed" and "trial-timeout" in r.error for r in slow)
    assert len(result.records) == 12 and result.wall_time < 12


def test_timeout_ends_the_search_and_keeps_the_finished_trials(ip):
    ip.run_cell("import time")
    cell = "x = 1.0  # tune: uniform(0, 1)\ntime.sleep(0.3)\nloss = x\n"
    result = run_tune(ip, "--max-evals 100 --timeout 1.5 --quiet", cell)
    assert result.stop_reason == "timeout"
    assert 2 <= sum(r.status == "ok" for r in result.records) < 10
    assert result.records[-1].status in ("ok", "cancelled")


def test_early_stop_ends_a_search_without_improvement(ip):
    result = run_tune(ip, "--max-evals 50 --early-stop 4 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = 1.0\n")
    assert len(result.records) == 5 and result.stop_reason == "early-stop"


def test_an_interrupt_keeps_the_finished_trials(ip):
    ip.run_cell("calls = []")
    cell = (
        "x = 1.0  # tune: uniform(0, 1)\ncalls.append(x)\nif len(calls) == 4:\n    raise KeyboardInterrupt\nloss = x\n"
    )
    result = run_tune(ip, "--max-evals 20 --quiet", cell)
    assert result.stop_reason == "interrupted"
    assert [r.status for r in result.records] == ["ok", "ok", "ok", "cancelled"]
    assert ip.user_ns["_tune"] is result


def test_space_var_takes_a_hyperopt_space_from_the_notebook(ip):
    ip.run_cell("from hyperopt import hp\nSPACE = {'x': hp.uniform('x', -1, 1), 'kind': hp.choice('kind', ['a', 'b'])}")
    cell = "loss = x ** 2 + (0 if kind == 'b' else 1)\n"
    result = run_tune(ip, "--space SPACE --max-evals 30 --seed 0 --quiet", cell)
    assert result.best_params["kind"] == "b" and abs(result.best_params["x"]) < 0.5
    assert result.param_names == ["x", "kind"]


def test_ipython_syntax_in_the_cell_is_transformed_first(ip):
    cell = "x = 1.0  # tune: uniform(0, 1)\n%env NBTUNE_TEST_VAR=1\n"
    cell += "import os\nloss = x + int(os.environ['NBTUNE_TEST_VAR'])\n"
    result = run_tune(ip, "--max-evals 2 --quiet", cell)
    assert all(r.status == "ok" and r.value > 1 for r in result.records)


def test_the_result_repr_is_short_and_readable(ip):
    result = run_tune(ip, "--max-evals 3 --seed 0 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    text = repr(result)
    assert text.startswith("<TuneResult best loss=") and "3 trials (3 ok)" in text and "\n" not in text


def test_progress_is_one_self_updating_line_and_a_summary(ip, capsys):
    run_tune(ip, "--max-evals 3", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    out = capsys.readouterr().out
    assert "\r[" in out and "3/3" in out and out.rstrip().splitlines()[-1].startswith("best loss=")


def test_quiet_shows_nothing(ip, capsys):
    run_tune(ip, "--max-evals 3 --quiet", "x = 1.0  # tune: uniform(0, 1)\nloss = x\n")
    assert capsys.readouterr().out == ""


def test_tune_api_runs_the_same_engine_from_python():
    import nbtune

    result = nbtune.tune(
        "y = 1  # tune: choice(1, 2, 3)\nloss = (y - scale) ** 2\n",
        {"scale": 2},
        max_evals=10,
        seed=0,
        quiet=True,
        backend="local",
        mlflow=False,
    )
    assert result.best_params == {"y": 2} and result.best_value == 0


def test_the_cell_value_is_the_result(ip):
    ip.run_cell("x = 0", store_history=True)
    out = ip.run_cell("%%tune --max-evals 2 --quiet\nx = 1.0  # tune: uniform(0, 1)\nloss = x\n", store_history=True)
    assert isinstance(out.result, TuneResult)


LOAD_EXT = """
import sys
from IPython.core.interactiveshell import InteractiveShell
InteractiveShell.instance().run_line_magic("load_ext", "nbtune")
print(sorted(m for m in ("hyperopt", "pyspark", "mlflow", "pandas", "matplotlib", "tensorflow") if m in sys.modules))
"""


def test_load_ext_imports_none_of_the_heavy_libraries():
    # hyperopt alone takes 2 s (it imports pyspark and scipy): it loads with the first search instead.
    out = subprocess.run([sys.executable, "-c", LOAD_EXT], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_api_says_ui_is_for_the_magic_rather_than_ignoring_it():
    with pytest.raises(UsageError, match="use `%%tune --ui` there"):
        nbtune.tune("x = 1.0  # tune: uniform(0, 1)\nloss = x\n", ui=True, quiet=True, mlflow=False)
