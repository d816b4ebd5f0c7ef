"""Every user error is a one-line UsageError naming the cause, and the shell stays usable."""

from __future__ import annotations

import pytest
from helpers import run_tune

from nbtune import UsageError

OK_CELL = "x = 1.0  # tune: uniform(0, 1)\nloss = x\n"

BAD = [
    ("--max-evals 0", OK_CELL, r"--max-evals must be a positive integer, got 0"),
    ("--max-evals many", OK_CELL, r"--max-evals: expected an integer, got 'many'"),
    ("--backend cloud", OK_CELL, r"--backend must be one of auto, local, spark, sparktrials, driver, got 'cloud'"),
    ("--algo bayes", OK_CELL, r"--algo must be one of tpe, random, anneal"),
    ("--mode up", OK_CELL, r"--mode must be one of min, max"),
    ("--frobnicate 3", OK_CELL, r"unrecognized arguments: --frobnicate 3"),
    ("--timeout -1", OK_CELL, r"--timeout must be a positive number of seconds"),
    ("--metric 'val loss'", OK_CELL, r"--metric must be a variable name"),
    ("--metric 'val", OK_CELL, r"cannot split the flags"),
    ("", "x = 1.0  # tune: gaussian(0, 1)\nloss = x\n", r"^line 2: unknown distribution 'gaussian'"),
    ("", "x = 1.0  # tune: uniform(1)\nloss = x\n", r"^line 2: uniform\(\) takes 2 arguments \(lo, hi\), got 1"),
    ("", "x = 1.0  # tune: uniform(2, 1)\nloss = x\n", r"^line 2: uniform\(\): lo must be less than hi"),
    ("", "x = 1.0  # tune: loguniform(0, 1)\nloss = x\n", r"^line 2: loguniform\(\): bounds must be positive"),
    ("", "x = 1  # tune: choice()\nloss = x\n", r"^line 2: choice\(\) needs at least one option"),
    ("", "x = 1.0  # tune: uniform(lo, hi)\nloss = x\n", r"^line 2: uniform\(\) arguments must be Python literals"),
    ("", "x = 1.0  # tune: uniform(0, 'a')\nloss = x\n", r"^line 2: uniform\(\): hi must be a number"),
    ("", "x = 1.0  # tune: uniform(0, 1\nloss = x\n", r"^line 2: cannot read annotation"),
    ("", "n = 3  # tune: randint(0.5, 4)\nloss = n\n", r"^line 2: randint\(\): bounds must be integers"),
    ("", "x = 1.0\nloss = x +\n", r"^line 3: syntax error in the cell"),
    ("", "x = 1.0\nloss = x\n", r"nothing to tune"),
    (
        "",
        "x = 1.0  # tune: uniform(0, 1)\nx = 2.0  # tune: uniform(0, 1)\nloss = x\n",
        r"^line 3: parameter 'x' is annotated twice",
    ),
    (
        "",
        "for i in range(2):  # tune: uniform(0, 1)\n    pass\nloss = 1\n",
        r"^line 2: '# tune:' must end a top-level assignment",
    ),
    (
        "",
        "if True:\n    x = 1.0  # tune: uniform(0, 1)\nloss = 1\n",
        r"^line 3: '# tune:' must end a top-level assignment",
    ),
    ("", "x = 1.0  # tune: uniform(0, 1)\nval = x\n", r"the cell never assigns 'loss' \(--metric\)"),
    ("--log-metrics acc", OK_CELL, r"the cell never assigns 'acc' \(--log-metrics\)"),
    ("", "x = 1.0  # tune: uniform(0, 1)\nloss = 'low'\n", r"the metric 'loss' must be a number, got str 'low'"),
    (
        "",
        "x = 1.0  # tune: uniform(0, 1)\nif x > 2:\n    loss = x\n",
        r"the cell ran but never assigned the metric 'loss'",
    ),
    (
        "",
        "x = 1.0  # tune: uniform(0, 1)\nloss = float('nan')\n",
        r"every trial failed; the first with: the metric 'loss' is nan",
    ),
    ("--space NOPE", "loss = x\n", r"--space NOPE: no variable named 'NOPE'"),
    ("--space NUMBER", "loss = x\n", r"--space NUMBER: expected a non-empty dict"),
    ("--backend local --parallelism 4", OK_CELL, r"--backend local runs one trial at a time"),
]
# Found by trying it as a new user would.
MORE = [
    ("--out for", OK_CELL, r"--out must be a variable name, got 'for'"),
    ("--out 2x", OK_CELL, r"--out must be a variable name, got '2x'"),
    ("--space PLAIN", "loss = x\n", r"--space PLAIN: holds no hyperopt expression"),
]


@pytest.mark.parametrize(("line", "cell", "message"), BAD + MORE, ids=[m[:40] for _, _, m in BAD + MORE])
def test_bad_input_is_a_one_line_usage_error(ip, line, cell, message):
    ip.run_cell("NUMBER = 3")
    ip.run_cell("PLAIN = {'x': 0.5, 'y': [1, 2]}")
    with pytest.raises(UsageError, match=message) as info:
        run_tune(ip, f"{line} --quiet", cell)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("line", "cell", "message"), BAD[:3] + BAD[9:11] + BAD[-5:-3])
def test_the_shell_shows_one_line_and_stays_usable(ip, capsys, line, cell, message):
    outcome = ip.run_cell(f"%%tune {line} --quiet\n{cell}")
    assert isinstance(outcome.error_in_exec, UsageError)
    err = capsys.readouterr().err.strip()
    assert err.startswith("UsageError:") and "Traceback" not in err
    assert ip.run_cell("y = 40 + 2").success and ip.user_ns["y"] == 42


def test_an_unknown_template_is_a_usage_error(ip):
    with pytest.raises(UsageError, match=r"unknown template 'nope' \(available: .*quickstart"):
        ip.run_line_magic("tune_template", "nope")


def test_a_bad_config_value_is_a_usage_error_at_the_next_search(ip):
    ip.run_line_magic("config", "TuneMagic.max_evals = -2")
    with pytest.raises(UsageError, match="--max-evals must be a positive integer, got -2"):
        run_tune(ip, "--quiet", OK_CELL)


def test_a_tracking_uri_mlflow_cannot_store_to_is_a_usage_error_before_the_search(ip):
    ip.run_line_magic("config", "TuneMagic.mlflow = True")
    with pytest.raises(UsageError, match=r"--tracking-uri bogus://x: MLflow has no store for this scheme") as info:
        run_tune(ip, "--tracking-uri bogus://x --max-evals 2 --quiet", OK_CELL)
    assert "\n" not in str(info.value) and "_tune" not in ip.user_ns
