"""The dashboard in a real browser: JupyterLab on 127.0.0.1, Debian chromium driven by Playwright."""

from __future__ import annotations

import re
import time

import pytest
from browser import screenshot

pytestmark = pytest.mark.browser

SETUP = "%load_ext nbtune\nimport time"
QUICK = (
    "%%tune --backend local --no-mlflow --max-evals 12 --seed 1\n"
    "x = 0.0      # tune: uniform(0, 1)\n"
    "kind = 'a'   # tune: choice('a', 'b')\n"
    "time.sleep(0.05 + x / 4)\n"
    "loss = (x - 0.3) ** 2 + (kind == 'b')\n"
)
LONG = (
    "%%tune --backend local --no-mlflow --max-evals 400 --algo random\n"
    "x = 0.0  # tune: uniform(0, 1)\n"
    "time.sleep(0.2)\n"
    "loss = x\n"
)
CHECK = "print('bound', _tune.stop_reason, len(_tune.records))"
WAIT = 120_000  # ms: the first cell imports nbtune, hyperopt and matplotlib on a shared 2-core machine


def cells(page):
    """The cells of the notebook on screen (other notebooks' panels may be open but hidden)."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell")


def output(page, cell: int):
    """The output area of the notebook's cell number `cell` (0-based)."""
    return cells(page).nth(cell).locator(".jp-Cell-outputWrapper")


def open_notebook(jupyterlab_server, page, name: str, sources: list[str]) -> None:
    """Write a notebook of these cells, open it in JupyterLab and wait for its kernel."""
    jupyterlab_server.write_notebook(name, sources)
    page.goto(jupyterlab_server.lab_url(name))
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=WAIT)


def run_cell(page, cell: int) -> None:
    cells(page).nth(cell).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")


def bar_state(dashboard) -> str:
    return dashboard.locator(".nbtune-progress .progress-bar").get_attribute("class") or ""


def test_dashboard_runs_shows_plots_and_table_and_cancel_stops_a_long_search(jupyterlab_server, page):
    open_notebook(jupyterlab_server, page, "demo.ipynb", [SETUP, QUICK, LONG, CHECK])

    run_cell(page, 0)
    run_cell(page, 1)
    quick = output(page, 1).locator(".nbtune-dashboard")
    quick.wait_for(timeout=WAIT)
    page.wait_for_function(
        "el => el.className.includes('progress-bar-success')",
        arg=quick.locator(".nbtune-progress .progress-bar").element_handle(timeout=WAIT),
        timeout=WAIT,
    )
    status = quick.locator(".nbtune-status").inner_text()
    assert "completed" in status and "12/12 trials" in status and "ok 12" in status
    histogram = quick.locator(".nbtune-histogram")
    histogram.wait_for(timeout=WAIT)
    assert histogram.evaluate("img => img.complete && img.naturalWidth > 100 && img.naturalHeight > 100")
    rows = quick.locator(".nbtune-trials tbody tr")
    assert rows.count() == 12
    assert "\u2605" in rows.first.inner_text()  # the best trial leads the table
    assert quick.locator(".nbtune-cancel").is_hidden()
    screenshot(page, "dashboard-completed")

    run_cell(page, 2)
    long = output(page, 2).locator(".nbtune-dashboard")
    long.wait_for(timeout=WAIT)
    page.wait_for_function(
        "el => /running 1/.test(el.innerText) && Number((el.innerText.match(/(\\d+)\\/400/) || [0, 0])[1]) >= 3",
        arg=long.locator(".nbtune-status").element_handle(timeout=WAIT),
        timeout=WAIT,
    )
    clicked_at = _finished(long)
    long.locator(".nbtune-cancel").click()
    page.wait_for_function(
        "el => el.className.includes('progress-bar-warning')",
        arg=long.locator(".nbtune-progress .progress-bar").element_handle(),
        timeout=WAIT,
    )
    status = long.locator(".nbtune-status").inner_text()
    stopped_at = _finished(long)
    assert "cancelled" in status and clicked_at <= stopped_at < 400
    screenshot(page, "dashboard-cancelled")

    run_cell(page, 3)
    printed = output(page, 3).locator(".jp-OutputArea-output").first
    printed.wait_for(timeout=WAIT)
    deadline = time.monotonic() + 60
    while "bound" not in printed.inner_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    _, reason, count = printed.inner_text().split()
    # The finished trials are kept and bound; the one running at the click is recorded as cancelled.
    assert reason == "cancelled" and int(count) >= stopped_at


def _finished(dashboard) -> int:
    match = re.search(r"(\d+)/400", dashboard.locator(".nbtune-status").inner_text())
    assert match
    return int(match.group(1))


FORM = (
    "%%tune --ui --backend local --no-mlflow --max-evals 20\n"
    "x = 0.0      # tune: uniform(-1, 1)\n"
    "kind = 'a'   # tune: choice('a', 'b')\n"
    "time.sleep(0.05)\n"
    "loss = (x - 0.3) ** 2 + (kind == 'b')\n"
)
FORM_CHECK = "print('form', len(_tune.records), min(r.params['x'] for r in _tune.records))"


def test_the_ui_form_starts_the_search_it_describes_and_binds_the_result(jupyterlab_server, page):
    open_notebook(jupyterlab_server, page, "form.ipynb", [SETUP, FORM, FORM_CHECK])
    run_cell(page, 0)
    run_cell(page, 1)
    form = output(page, 1).locator(".nbtune-form")
    form.wait_for(timeout=WAIT)
    x_row = form.locator(".nbtune-form-param").first
    assert x_row.locator("select").input_value() == "uniform"
    lo = x_row.locator("input").first
    assert lo.input_value() == "-1"
    lo.fill("0.5")  # the learner narrows the range without editing code
    lo.press("Tab")
    max_evals = form.locator(".widget-inline-hbox", has_text="max evals").locator("input")
    max_evals.fill("8")
    max_evals.press("Tab")
    form.locator(".nbtune-start").click()
    bar = form.locator(".nbtune-progress .progress-bar")
    bar.wait_for(timeout=WAIT)
    page.wait_for_function(
        "el => el.className.includes('progress-bar-success')", arg=bar.element_handle(), timeout=WAIT
    )
    assert "8/8 trials" in form.locator(".nbtune-status").inner_text()
    message = form.locator(".nbtune-form-message").element_handle()
    page.wait_for_function("el => el.innerText.includes('_tune')", arg=message, timeout=WAIT)
    screenshot(page, "form-completed")
    run_cell(page, 2)
    printed = output(page, 2).locator(".jp-OutputArea-output").first
    printed.wait_for(timeout=WAIT)
    _, count, lowest = printed.inner_text().split()
    assert count == "8" and float(lowest) >= 0.5
