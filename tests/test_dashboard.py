"""The live dashboard: widget state as a front end receives it (recorded comms), no browser."""

from __future__ import annotations

import io
import itertools
import re
import threading

import pytest
from helpers import run_tune
from widget_comms import Comms, record_comms

import nbtune
from nbtune import _listeners
from nbtune._events import Listener, SearchInfo
from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.trial._records import TrialRecord
from nbtune.ui._dashboard import Dashboard
from nbtune.ui._progress import TextProgress
from nbtune.ui._uievents import UiEvents

PNG = b"\x89PNG\r\n\x1a\n"
QUAD = "x = 0.0  # tune: uniform(-2, 2)\ny = 1  # tune: choice(1, 2, 3)\nloss = (x - 0.5) ** 2 + y\n"
FLAKY = (
    "x = 0.0  # tune: uniform(-2, 2)\n"
    "print('training with', x)\n"
    "if x > 0.5:\n"
    "    raise ValueError(f'x too large: {x:.3f}')\n"
    "loss = x ** 2\n"
)
REPORTING = (
    "x = 0.5  # tune: uniform(0, 1)\n"
    "import nbtune\n"
    "for step in range(1, 10):\n"
    "    loss = x + 1.0 / step\n"
    "    nbtune.report(loss=loss)\n"
)
OPTS = {"backend": "local", "mlflow": False, "quiet": True}


@pytest.fixture
def comms(monkeypatch) -> Comms:
    return record_comms(monkeypatch)


class FakeClock:
    """A clock that moves `step` seconds each time it is read: throttling without timing."""

    def __init__(self, step: float) -> None:
        self._ticks = itertools.count()
        self._step = step

    def __call__(self) -> float:
        return next(self._ticks) * self._step


class ManualClock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run(cell: str, dashboard: Dashboard, extra: list[Listener] | None = None, **options) -> TuneResult:
    return nbtune.tune(cell, {}, listeners=[dashboard, *(extra or [])], **{**OPTS, **options})


def texts(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html).replace("&middot;", "·")


def test_final_state_shows_full_progress_counts_best_params_and_a_success_bar(comms: Comms):
    shown = []
    dash = Dashboard(show=shown.append)
    result = run(QUAD, dash, max_evals=12, seed=1)
    assert shown == [dash.widget] and result.dashboard is dash
    bar = comms.frontend_state(dash.bar)
    assert (bar["value"], bar["max"], bar["bar_style"]) == (12, 12, "success")
    status = texts(comms.frontend_state(dash.status)["value"])
    assert "completed" in status and "12/12 trials" in status
    assert "running 0" in status and "ok 12" in status and "failed 0" in status and "cancelled 0" in status
    best = texts(comms.frontend_state(dash.best)["value"])
    assert f"loss = {result.best_value:.4g}" in best
    assert f"x={result.best_params['x']:.4g}" in best and f"y={result.best_params['y']}" in best
    header = texts(comms.frontend_state(dash.header)["value"])
    assert "backend local" in header and "algorithm tpe" in header and "minimise loss" in header
    assert comms.frontend_state(dash.cancel_button)["layout"] is not None
    assert dash.cancel_button.layout.display == "none"  # a finished search has nothing to cancel


def test_table_lists_the_best_trial_first_then_the_newest(comms: Comms):
    dash = Dashboard(show=lambda _: None)
    result = run(QUAD, dash, max_evals=30, seed=2, algo="random")
    table = comms.frontend_state(dash.table)["value"]
    rows = re.findall(r'<tr class="nbtune-row-[^"]*">(.*?)</tr>', table)
    numbers = [int(re.match(r"<td>(\d+)", row).group(1)) for row in rows]
    best = result.best_trial.number
    assert numbers[0] == best and "&#9733;" in rows[0]
    assert numbers[1:] == [n for n in range(29, -1, -1) if n != best][:24]
    assert "25 of 30 trials shown" in table and "_tune.to_pandas()" in table


def test_failed_trials_show_their_error_expandable_to_traceback_and_output(comms: Comms):
    dash = Dashboard(show=lambda _: None)
    result = run(FLAKY, dash, max_evals=15, seed=4, algo="random")
    failed = [r for r in result.records if r.status == "failed"]
    assert failed and any(r.status == "ok" for r in result.records)
    table = comms.frontend_state(dash.table)["value"]
    row = re.search(rf'<tr class="nbtune-row-failed"><td>{failed[-1].number}</td>.*?</tr>', table, re.S).group(0)
    assert '<details class="nbtune-trial-details"><summary>line 4: ValueError: x too large' in row
    assert "Traceback (most recent call last)" in row and "raise ValueError" in row
    assert "output:" in row and f"training with {failed[-1].params['x']}" in row
    status = texts(comms.frontend_state(dash.status)["value"])
    assert f"failed {len(failed)}" in status and "bar_style" not in status


def test_plots_are_png_images_of_durations_the_metric_and_one_or_two_parameters(comms: Comms):
    dash = Dashboard(show=lambda _: None)
    run(QUAD, dash, max_evals=8, seed=3)
    for image in (dash.histogram, dash.metric_plot, dash.param_plot, dash.parallel_plot, dash.importance_plot):
        state = comms.frontend_state(image)
        assert state["value"].startswith(PNG) and state["format"] == "png"
        assert image.layout.display == ""
    three = QUAD.replace("loss =", "z = 1  # tune: randint(0, 3)\nloss = z +")
    dash3 = Dashboard(show=lambda _: None)
    run(three, dash3, max_evals=4, seed=3)
    assert bytes(dash3.histogram.value).startswith(PNG) and dash3.param_plot.layout.display == "none"
    assert bytes(dash3.parallel_plot.value).startswith(PNG)  # any number of parameters
    assert dash3.importance_plot.layout.display == "none"  # 4 trials: too few to tell


def test_importance_is_recomputed_only_as_the_ok_trials_grow_by_a_quarter(comms: Comms):
    result = run(QUAD, Dashboard(show=lambda _: None), max_evals=40, seed=3)
    dash = Dashboard(show=lambda _: None)
    computed = []
    for n in range(1, 41):
        before = dash._importance_ok
        dash._draw_importance(result.records[:n], result, final=n == 40)
        if dash._importance_ok != before:
            computed.append(n)
    # From 8 trials (2 parameters), then each time the count grew by a quarter, and at the end.
    assert computed == [8, 10, 13, 17, 22, 28, 35, 40]
    assert bytes(dash.importance_plot.value).startswith(PNG)


def test_a_thousand_fast_trials_send_a_few_messages_a_second_and_the_final_state_is_exact(comms: Comms):
    # Each clock reading moves 1 ms: 1000 trials of "1 ms" take about 3 s on the dashboard's clock.
    dash = Dashboard(show=lambda _: None, interval=0.25, plot_interval=2.0, clock=FakeClock(0.001))
    options = TuneOptions(max_evals=1000, backend="local", mlflow=False)
    result = TuneResult("loss", "min", ["x"])
    dash.search_started(SearchInfo("fast", options, "local", 1, ["x"]), result)
    opened = len(comms.messages)
    for n in range(1000):
        dash.trial_started(n, {"x": n / 1000})
        record = TrialRecord(
            number=n, tid=n, params={"x": n / 1000}, status="ok", value=(n - 600) ** 2, duration=0.001, host="h"
        )
        result.records.append(record)
        dash.trial_finished(record)
        dash.poll()
    result.stop_reason = "completed"
    dash.search_finished(result)
    sent = comms.messages[opened:]
    assert dash.draws <= 20  # a redraw every 0.25 s of 3 s, plus the first and the final
    assert len(sent) <= 100 and {m[1]["method"] for m in sent} == {"update"}
    assert comms.frontend_state(dash.bar)["value"] == 1000
    assert "1000/1000 trials" in texts(comms.frontend_state(dash.status)["value"])
    assert "trial 600" in texts(comms.frontend_state(dash.best)["value"])
    plotted = [m for m in sent if m[0] == dash.histogram.model_id and m[2]]
    assert 1 <= len(plotted) <= 3  # plots at most every 2 s, and the final one


def test_cancel_click_stops_the_search_after_the_running_trial_and_keeps_finished_trials(comms: Comms):
    dash = Dashboard(show=lambda _: None)

    class ClickAfterThree(Listener):
        def trial_finished(self, record: TrialRecord) -> None:
            if record.number == 2:
                comms.click(dash.cancel_button)  # the front end's message, through the button's comm

    result = run("x = 0.0  # tune: uniform(0, 1)\nloss = x\n", dash, [ClickAfterThree()], max_evals=50)
    assert result.stop_reason == "cancelled"
    assert len(result.records) == 3 and all(r.status == "ok" for r in result.records)
    assert comms.frontend_state(dash.bar)["bar_style"] == "warning"
    assert "cancelled" in texts(comms.frontend_state(dash.status)["value"])
    assert "next Python line" in dash.cancel_button.tooltip  # what the local backend can promise


def test_a_click_delivered_while_a_long_local_trial_runs_stops_that_trial_at_once(comms: Comms):
    # JupyterLab 4.6 delivers widget messages on a kernel subshell's thread while the cell runs.
    dash = Dashboard(show=lambda _: None)

    class ClickDuringTheSecondTrial(Listener):
        def trial_started(self, number: int, params: dict) -> None:
            if number == 1:
                threading.Timer(1.0, comms.click, [dash.cancel_button]).start()

    cell = "import time\nx = 0.0  # tune: uniform(0, 1)\nif trial_no():\n    for _ in range(600):\n"
    cell += "        time.sleep(0.05)  # a 30 s trial, in Python steps like a training loop\nloss = x\n"
    calls = itertools.count()
    result = nbtune.tune(
        cell, {"trial_no": lambda: next(calls)}, listeners=[dash, ClickDuringTheSecondTrial()], **OPTS, max_evals=5
    )
    assert result.stop_reason == "cancelled"
    assert [r.status for r in result.records] == ["ok", "cancelled"]
    assert result.records[1].error == "stopped: cancelled" and result.wall_time < 20  # not the 30 s trial


def test_magic_in_a_kernel_shows_one_dashboard_and_the_result_points_to_it(ip, comms: Comms, monkeypatch):
    shown = []
    monkeypatch.setattr(_listeners, "in_widget_frontend", lambda: True)
    monkeypatch.setattr("nbtune.ui._dashboard._display", lambda bundle: shown.append(bundle) or Handle())

    class Handle:
        def update(self, bundle, raw: bool) -> None:
            shown.append(bundle)

    result = run_tune(ip, "--max-evals 5 --backend local --no-mlflow --seed 0", QUAD)
    assert ip.user_ns["_tune"] is result and isinstance(result.dashboard, Dashboard)
    assert result.dashboard.bar.value == 5 and "dashboard" not in repr(result).lower()
    view = {"version_major": 2, "version_minor": 0, "model_id": result.dashboard.widget.model_id}
    assert [b["application/vnd.jupyter.widget-view+json"] for b in shown] == [view, view]  # shown, then final
    assert "text/html" not in shown[0] and shown[1]["text/plain"] == result.summary()
    static = shown[1]["text/html"]  # for viewers without the widget state
    # metric, durations, parameters, parallel coordinates (importance needs 8 trials)
    assert "completed" in static and "5/5</b> trials" in static and static.count("data:image/png;base64,") == 4


def test_outside_a_kernel_a_text_line_is_shown_and_quiet_shows_nothing():
    shown = [TextProgress, Dashboard]
    assert [type(x) for x in _listeners.listeners_for(TuneOptions()) if type(x) in shown] == [TextProgress]
    assert [x for x in _listeners.listeners_for(TuneOptions(quiet=True)) if type(x) in shown] == []
    with_form = _listeners.listeners_for(TuneOptions(quiet=True), show=print)
    assert [type(x) for x in with_form if type(x) in shown] == [Dashboard]


def test_ui_event_polling_outside_a_kernel_does_nothing():
    events = UiEvents()
    events.start()
    assert not events.active
    events.poll()
    events.stop()


@pytest.mark.parametrize("stop, style", [("completed", "success"), ("timeout", "warning"), ("error", "danger")])
def test_the_bar_colour_says_how_the_search_ended(comms: Comms, stop, style):
    dash = Dashboard(show=lambda _: None)
    result = TuneResult("loss", "min", ["x"])
    dash.search_started(SearchInfo("s", TuneOptions(max_evals=2), "local", 1, ["x"]), result)
    result.records.append(TrialRecord(number=0, tid=0, params={"x": 1}, status="ok", value=1.0, duration=0.1, host="h"))
    result.stop_reason = stop
    dash.search_finished(result)
    assert comms.frontend_state(dash.bar)["bar_style"] == style


def test_a_pruned_search_shows_learning_curves_and_counts_pruned_trials(comms: Comms, monkeypatch):
    shown = []
    monkeypatch.setattr("nbtune.ui._dashboard._display", lambda bundle: shown.append(bundle) or Handle())

    class Handle:
        def update(self, bundle, raw: bool) -> None:
            shown.append(bundle)

    dash, line = Dashboard(), io.StringIO()
    result = run(REPORTING, dash, [TextProgress(stream=line)], max_evals=20, seed=1, prune="asha")
    counts = result.counts()
    assert counts["pruned"] > 0 and counts["ok"] > 0
    curves = comms.frontend_state(dash.curves_plot)
    assert curves["value"].startswith(PNG) and len(curves["value"]) > 1000 and dash.curves_plot.layout.display == ""
    status = texts(comms.frontend_state(dash.status)["value"])
    assert f"ok {counts['ok']} · pruned {counts['pruned']} · failed 0" in status
    assert f"pruned {counts['pruned']}" in line.getvalue()  # the text progress line counts them too
    table = comms.frontend_state(dash.table)["value"]
    assert "<th>step</th>" in table and "<th>error</th>" not in table  # pruning is no error
    for r in (r for r in result.records if r.status == "pruned"):
        assert r.value is not None and 1 <= r.step < 9
        row = re.search(rf'<tr class="nbtune-row-pruned"><td>{r.number}</td>(.*?)</tr>', table)
        status, value, _duration, step, *_ = re.findall(r"<td>(.*?)</td>", row[1]) if row else [""] * 4
        assert (texts(status), value, step) == ("pruned", f"{r.value:.4g}", str(r.step))
    final = shown[-1]
    assert f"{counts['pruned']} pruned" in final["text/plain"]
    assert final["text/html"].count("data:image/png;base64,") == 5  # the learning curves join the other four


def test_no_reports_no_learning_curves_and_no_pruned_count_without_pruning(comms: Comms):
    dash = Dashboard(show=lambda _: None)
    run(QUAD, dash, max_evals=4, seed=3)
    assert dash.curves_plot.layout.display == "none" and not dash.curves_plot.value
    table = comms.frontend_state(dash.table)["value"]
    assert "pruned" not in texts(comms.frontend_state(dash.status)["value"]) and "<th>step</th>" not in table


def test_learning_curves_draw_reports_of_running_trials_after_the_plot_throttle(comms: Comms, monkeypatch):
    from nbtune.ui import _plots

    drawn: list[list[_plots.CurveLine]] = []
    real = _plots.learning_curves
    spy = lambda lines, metric: drawn.append(list(lines)) or real(lines, metric)  # noqa: E731
    monkeypatch.setattr(_plots, "learning_curves", spy)
    clock = ManualClock()
    dash = Dashboard(show=lambda _: None, interval=0.25, plot_interval=2.0, clock=clock)
    result = TuneResult("loss", "min", ["x"])
    options = TuneOptions(max_evals=2, backend="local", mlflow=False, prune="asha")
    dash.search_started(SearchInfo("curves", options, "local", 1, ["x"]), result)
    pruned = TrialRecord(
        number=0, tid=0, params={"x": 0.9}, status="pruned", value=1.9, step=1, curve=[(1, {"loss": 1.9})]
    )
    dash.trial_started(0, {"x": 0.9})
    result.records.append(pruned)
    dash.trial_finished(pruned)

    clock.now = 0.5
    dash.trial_started(1, {"x": 0.1})
    clock.now = 0.8
    dash.trial_reported(1, 1, {"loss": 1.1, "acc": 0.5})
    dash.trial_reported(1, 2, {"acc": 0.6})  # no --metric in this report: nothing to draw
    assert dash.live_curves == {1: [(1, 1.1)]}
    assert drawn == [] and dash.curves_plot.layout.display == "none"  # within the plot interval
    row = re.search(r'<tr class="nbtune-row-running"><td>1</td>.*?</tr>', comms.frontend_state(dash.table)["value"])
    assert row and "<td>1</td><td>0.1</td>" in row.group(0)  # the step it reached, then x

    clock.now = 100.0
    dash.trial_reported(1, 3, {"loss": 0.6})
    assert dash.live_curves == {1: [(1, 1.1), (3, 0.6)]}
    assert drawn == [[_plots.CurveLine(0, "pruned", ((1, 1.9),)), _plots.CurveLine(1, "running", ((1, 1.1), (3, 0.6)))]]
    assert comms.frontend_state(dash.curves_plot)["value"].startswith(PNG) and dash.curves_plot.layout.display == ""

    clock.now = 200.0
    dash.poll()  # the clocks redraw, but no report came: the curves are not drawn again
    assert len(drawn) == 1 and dash.draws >= 3

    clock.now = 200.1
    curve = [(1, {"loss": 1.1}), (3, {"loss": 0.6})]
    done = TrialRecord(number=1, tid=1, params={"x": 0.1}, status="ok", value=0.6, step=3, curve=curve)
    result.records.append(done)
    dash.trial_finished(done)
    assert dash.live_curves == {}
    result.stop_reason = "completed"
    dash.search_finished(result)
    assert drawn[-1] == [
        _plots.CurveLine(0, "pruned", ((1, 1.9),)),
        _plots.CurveLine(1, "best", ((1, 1.1), (3, 0.6))),
    ]


# -- in a real kernel ---------------------------------------------------------------------------

SLOW_CELL = "x = 0.0  # tune: uniform(0, 1)\ntime.sleep(0.05)\nloss = x\n"


def _widget_states(nb) -> dict[str, dict]:
    return nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


def _by_class(states: dict[str, dict], css: str) -> dict:
    (found,) = [m for m in states.values() if css in m["state"].get("_dom_classes", [])]
    return found


def test_notebook_run_by_nbclient_saves_the_finished_dashboard_in_its_widget_state(tmp_path):
    import base64

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext nbtune\nimport time"),
        nbformat.v4.new_code_cell("%%tune --backend local --no-mlflow --max-evals 12 --seed 5\n" + QUAD),
        nbformat.v4.new_code_cell("b = _tune.best_params\nprint(f\"{b['x']:.4g} {b['y']} {len(_tune.records)}\")"),
    ]
    NotebookClient(nb, timeout=300, store_widget_state=True, resources={"metadata": {"path": str(tmp_path)}}).execute()
    states = _widget_states(nb)
    bar = _by_class(states, "nbtune-progress")["state"]
    assert (bar["value"], bar["max"], bar["bar_style"]) == (12, 12, "success")
    assert "12/12</b> trials" in _by_class(states, "nbtune-status")["state"]["value"]
    best_text = _by_class(states, "nbtune-best")["state"]["value"]
    x, y, count = nb.cells[2].outputs[0]["text"].split()
    assert count == "12" and f"<b>x</b>={x}" in best_text and f"<b>y</b>={y}" in best_text
    for css in ("nbtune-histogram", "nbtune-metric-plot", "nbtune-param-plot", "nbtune-parallel-plot"):
        image = _by_class(states, css)
        assert base64.b64decode(image["buffers"][0]["data"]).startswith(PNG)
    outputs = nb.cells[1].outputs
    views = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    dashboard = _by_class(states, "nbtune-dashboard")
    assert [v["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] for v in views] == [
        next(k for k, m in states.items() if m is dashboard)
    ]
    static = views[0]["data"]["text/html"]  # what nbconvert or GitHub show of the saved notebook
    assert "12/12</b> trials" in static and f"<b>x</b>={x}" in static and "data:image/png;base64," in static


def test_a_cancel_click_reaches_a_running_cell_in_a_kernel_without_subshells_and_queued_cells_wait(tmp_path):
    # nbclient and VS Code send widget messages on the main shell, which is busy running the
    # cell: the dashboard must read them itself. (JupyterLab's subshell route is the browser test.)
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        _run(kc, "%load_ext nbtune\nimport time")
        kc.execute("%%tune --backend local --no-mlflow --max-evals 300 --algo random\n" + SLOW_CELL)
        # "Run all" queues the next cell while this one runs: it must wait for it, not be lost.
        next_id = kc.execute("print('next cell sees', _tune.stop_reason)")
        cancel_id, progress_id, clicked, next_output = None, None, False, ""
        while True:
            msg = kc.get_iopub_msg(timeout=120)
            content = msg["content"]
            if msg["msg_type"] == "stream" and msg["parent_header"].get("msg_id") == next_id:
                next_output += content["text"]
            if msg["msg_type"] == "comm_open":
                state = content["data"]["state"]
                if state.get("description") == "Cancel":
                    cancel_id = content["comm_id"]
                if state.get("_model_name") == "IntProgressModel":
                    progress_id = content["comm_id"]
            elif msg["msg_type"] == "comm_msg" and content["comm_id"] == progress_id and not clicked:
                if content["data"].get("state", {}).get("value", 0) >= 3:
                    click = {"method": "custom", "content": {"event": "click"}}
                    kc.shell_channel.send(kc.session.msg("comm_msg", {"comm_id": cancel_id, "data": click}))
                    clicked = True
            elif msg["parent_header"].get("msg_id") == next_id and content.get("execution_state") == "idle":
                break
        assert clicked and next_output == "next cell sees cancelled\n"
        stop, count = _run(kc, "print(_tune.stop_reason, len(_tune.records))").split()
        assert stop == "cancelled" and 3 <= int(count) < 300
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def _run(kc, code: str) -> str:
    """Execute code in the kernel and return its printed output."""
    reply = kc.execute_interactive(code, timeout=120, output_hook=(out := _Collect()))
    assert reply["content"]["status"] == "ok", reply["content"]
    return out.text


class _Collect:
    def __init__(self) -> None:
        self.text = ""

    def __call__(self, msg) -> None:
        if msg["msg_type"] == "stream":
            self.text += msg["content"]["text"]
