"""Templates: listed, returned as text, inserted below by %tune_template, and they run."""

from __future__ import annotations

from helpers import ROOT

import nbtune
from nbtune.cell._flags import parse_flags
from nbtune.cell._parse import parse_cell


def test_templates_are_read_from_the_top_level_folder():
    assert "quickstart" in nbtune.templates.names()
    text = nbtune.templates.get("quickstart")
    assert text == (ROOT / "templates" / "quickstart.ipy").read_text()
    assert text.startswith("%%tune ")


def test_list_shows_each_template_with_its_description(ip, capsys):
    ip.run_line_magic("tune_template", "--list")
    out = capsys.readouterr().out
    assert "quickstart" in out and "support vector classifier" in out


def test_tune_template_puts_the_cell_below(ip):
    ip.run_line_magic("tune_template", "quickstart")
    assert ip.rl_next_input == nbtune.templates.get("quickstart")


def test_the_quickstart_template_runs_as_a_cell(ip):
    header, body = nbtune.templates.get("quickstart").split("\n", 1)
    result = ip.run_cell_magic("tune", header.removeprefix("%%tune") + " --max-evals 6 --seed 0 --quiet", body)
    assert len(result.records) == 6 and result.best_value > 0.9
    assert set(result.best_params) == {"C", "gamma", "kernel"}


def test_the_spark_ml_template_tunes_a_pipeline_on_the_driver_with_cross_validation_as_the_metric():
    header, body = nbtune.templates.get("spark_ml").split("\n", 1)
    options = parse_flags(header.removeprefix("%%tune"))
    assert options.backend == "driver" and options.max_evals == 16 and options.mode == "max"
    assert options.metric == "accuracy" and options.log_metrics == ("test_accuracy",)
    assert options.prune == "asha"  # CrossValidator reports each fold: hopeless trials end after one
    spec = parse_cell(body, line_offset=1)
    assert [p.name for p in spec.params] == ["reg", "k"]  # the regularization and the feature size
    assert {"accuracy", "test_accuracy", "model"} <= spec.binds and "numFolds=3" in body and "Pipeline(" in body
    # Its execution on Spark: demo_notebooks/04_spark_ml.ipynb (tests/test_demo_notebooks.py).
