"""`%%tune --ui`: the widget form, prefilled from the annotations; Start runs the search the flags would."""

from __future__ import annotations

import time

import pytest
from helpers import run_tune
from widget_comms import Comms, record_comms

from nbtune import TuneResult, UsageError
from nbtune.ui._dashboard import Dashboard
from nbtune.ui._form import TuneForm

CELL = """
lr = 1e-3        # tune: loguniform(1e-5, 1e-1)
batch = 64       # tune: choice(32, 64, 128)
depth = 2        # tune: randint(1, 5)
score = -abs(depth - 3) - abs(batch - 64) / 64 - (lr - 0.01) ** 2
"""
FLAGS = "--ui --backend local --no-mlflow"


@pytest.fixture
def comms(monkeypatch) -> Comms:
    return record_comms(monkeypatch)


def show_form(ip, flags: str = "", cell: str = CELL) -> TuneForm:
    form = run_tune(ip, f"{FLAGS} {flags}", cell)
    assert isinstance(form, TuneForm)
    return form


def find(widget, css: str):
    """The widget with this CSS class inside `widget`, or None."""
    if css in getattr(widget, "_dom_classes", ()):
        return widget
    for child in getattr(widget, "children", ()):
        if (found := find(child, css)) is not None:
            return found
    return None


def fields(form: TuneForm, name: str) -> list[str]:
    (row,) = [r for r in form.rows if r.name == name]
    return [f.value for f in row.args.children]


def test_the_form_has_one_row_per_annotated_parameter_prefilled_from_the_annotations(ip, comms):
    form = show_form(ip, "--max-evals 7 --metric score --mode max --algo random")
    assert [(r.name, r.dist.value) for r in form.rows] == [
        ("lr", "loguniform"),
        ("batch", "choice"),
        ("depth", "randint"),
    ]
    assert fields(form, "lr") == ["1e-05", "0.1"]
    assert fields(form, "batch") == ["32, 64, 128"]
    assert fields(form, "depth") == ["1", "5"]
    assert (form.max_evals.value, form.parallelism.value, form.algo.value) == (7, 0, "random")
    assert (form.metric.value, form.mode.value) == ("score", "max")
    assert "_tune" not in ip.user_ns  # nothing runs until Start


def test_start_runs_the_search_the_form_describes_and_binds_the_result(ip, comms):
    form = show_form(ip, "--metric score --mode max --out found")
    form.max_evals.value = 6
    row = form.rows[0]
    row.dist.value = "uniform"
    row.args.children[0].value, row.args.children[1].value = "0.5", "0.75"
    form.rows[1].args.children[0].value = "16, 256"
    comms.click(form.start_button)  # as the front end sends it
    result = form.wait(120)
    assert isinstance(result, TuneResult) and ip.user_ns["found"] is result
    assert len(result.records) == 6 and result.mode == "max"
    assert all(0.5 <= r.params["lr"] <= 0.75 and r.params["batch"] in (16, 256) for r in result.records)
    assert isinstance(result.dashboard, Dashboard) and form.slot.children == (result.dashboard.widget,)
    assert result.dashboard.bar.value == 6 and result.dashboard.bar.bar_style == "success"
    assert "found" in form.message.value and not form.start_button.disabled


def test_changing_a_distribution_keeps_the_bounds_and_a_choice_lists_the_options(ip, comms):
    form = show_form(ip, "--metric score --mode max")
    lr = form.rows[0]
    lr.dist.value = "qloguniform"
    assert fields(form, "lr") == ["1e-05", "0.1", ""]
    lr.dist.value = "choice"
    assert fields(form, "lr") == ["1e-05, 0.1"]
    assert lr.param().args == (1e-05, 0.1)


def test_bad_input_is_one_line_in_the_form_and_starts_nothing(ip, comms):
    form = show_form(ip, "--metric score --mode max")
    form.rows[2].args.children[1].value = "0"
    comms.click(form.start_button)
    assert "depth: randint(): lo must be less than hi" in form.message.value
    assert not form.running and "_tune" not in ip.user_ns
    form.rows[2].args.children[1].value = "4"
    form.metric.value = "accuracy"
    comms.click(form.start_button)
    assert "metric: the cell never assigns &#x27;accuracy&#x27;" in form.message.value


def test_cancel_in_the_forms_dashboard_stops_the_background_search(ip, comms):
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport time\ntime.sleep(0.05)\nloss = x\n"
    form = show_form(ip, "--max-evals 500", cell)
    comms.click(form.start_button)
    deadline = time.monotonic() + 120
    while not ((bar := find(form.widget, "nbtune-progress")) and bar.value >= 2):
        assert time.monotonic() < deadline and form.running
        time.sleep(0.02)
    # The click is handled here, as on the kernel's idle thread, while the search runs on its own.
    comms.click(find(form.widget, "nbtune-cancel"))
    result = form.wait(120)
    assert result is not None and result.stop_reason == "cancelled"
    assert 2 <= len(result.records) < 500 and ip.user_ns["_tune"] is result


def test_ui_with_nothing_to_tune_is_a_one_line_error(ip, comms):
    with pytest.raises(UsageError, match="nothing to tune"):
        run_tune(ip, FLAGS, "loss = 1.0\n")
