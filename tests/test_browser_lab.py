"""nbtune's JupyterLab extension in a real browser: JupyterLab on 127.0.0.1, Debian chromium via Playwright."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from browser import screenshot

from nbtune import templates
from nbtune.cell._read import read_cell

pytestmark = pytest.mark.browser

WAIT = 120_000  # ms: loading nbtune imports hyperopt and friends on a shared 2-core machine
TEMPLATE = "fashion_mnist" if "fashion_mnist" in templates.names() else "quickstart"
SETUP = "%load_ext nbtune\n%env NBTUNE_MLFLOW_UI_URL=http://127.0.0.1:5999\nimport time"
BAD = "%%tune --backend local\nx = 1.0  # tune: gaussian(0, 1)\nloss = x"
QUICK = (
    "%%tune --backend local --max-evals 6 --seed 2\n"
    "x = 0.5  # tune: uniform(0, 1)\n"
    "time.sleep(0.4)\n"
    "loss = (x - 0.3) ** 2\n"
)


@pytest.fixture(autouse=True)
def _extension_installed() -> None:
    if not (Path(sys.prefix) / "share/jupyter/labextensions/nbtune/package.json").exists():
        pytest.fail("the JupyterLab extension is not built/installed in this environment: run `make labextension`")


def cell(page, n: int):
    return page.locator(".jp-Notebook .jp-Cell").nth(n)


def run_cell(page, n: int) -> None:
    cell(page, n).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")


def open_notebook(server, page, name: str, cells: list[str]) -> None:
    server.write_notebook(name, cells)
    page.goto(server.lab_url(name) + "&reset")  # a fresh workspace: only this notebook open
    page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=WAIT)


def hover_tooltip(page, mark) -> str:
    mark.hover()
    tip = page.locator(".cm-tooltip .nbtune-tooltip")
    tip.wait_for(timeout=10_000)
    text = tip.inner_text()
    page.mouse.move(5, 5)  # away, so the tooltip closes
    tip.wait_for(state="detached", timeout=10_000)
    return text


def test_the_command_inserts_the_template_from_the_kernel_with_its_annotations_marked(jupyterlab_server, page):
    open_notebook(jupyterlab_server, page, "template.ipynb", [SETUP, BAD])

    # Before nbtune is loaded the extension reads annotations itself, with the magic's wording.
    bad = cell(page, 1).locator(".nbtune-annotation-error")
    bad.wait_for(timeout=WAIT)
    (expected_bad,) = read_cell(BAD)["annotations"]
    assert bad.get_attribute("data-nbtune-read-by") == "extension"
    assert hover_tooltip(page, bad).splitlines()[0] == expected_bad["message"]

    run_cell(page, 0)
    cell(page, 0).locator(".jp-InputPrompt", has_text="[1]").wait_for(timeout=WAIT)
    # Once nbtune is loaded, the kernel's own parser reads them.
    page.locator('.nbtune-annotation-error[data-nbtune-read-by="kernel"]').wait_for(timeout=WAIT)
    assert hover_tooltip(page, bad).splitlines() == [expected_bad["message"], "as read by nbtune in the kernel"]

    # The same command sits in the notebook toolbar; here it is run from the command palette.
    assert page.locator(".jp-NotebookPanel-toolbar .nbtune-template-button").is_visible()
    cell(page, 1).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")  # command mode, cell 1 active
    page.keyboard.press("Control+Shift+C")
    page.locator("#modal-command-palette input").fill("nbtune: insert tuning template")
    page.keyboard.press("Enter")
    dialog = page.locator(".jp-Dialog")
    select = dialog.locator(".nbtune-template-select")
    select.wait_for(timeout=WAIT)
    assert [o.get_attribute("value") for o in select.locator("option").all()] == templates.names()
    assert select.input_value() == TEMPLATE
    assert dialog.locator(".nbtune-template-preview").inner_text().strip() == templates.get(TEMPLATE).strip()
    screenshot(page, "lab-template-dialog")
    dialog.locator(".jp-Dialog-button.jp-mod-accept").click()

    inserted = cell(page, 2)
    text = templates.get(TEMPLATE).rstrip("\n")
    inserted.locator(".cm-line").first.wait_for(timeout=WAIT)
    assert inserted.locator(".cm-line").first.inner_text() == text.splitlines()[0]
    assert "jp-mod-active" in (inserted.get_attribute("class") or "")

    expected = read_cell(text)["annotations"]
    assert len(expected) >= 2 and all("reading" in a for a in expected)
    marks = inserted.locator('.nbtune-annotation-ok[data-nbtune-read-by="kernel"]')
    page.wait_for_function(
        "([el, n]) => el.querySelectorAll('.nbtune-annotation-ok[data-nbtune-read-by=\"kernel\"]').length === n",
        arg=[inserted.element_handle(), len(expected)],
        timeout=WAIT,
    )
    assert inserted.locator(".nbtune-annotated-line-ok").count() == len(expected)
    assert inserted.locator(".nbtune-magic").inner_text() == "%%tune"
    first = hover_tooltip(page, marks.first)
    assert first.splitlines()[0] == expected[0]["reading"]

    # The cell is still highlighted as Python: keywords get the editor's keyword colour.
    keyword_colour = page.evaluate(
        """el => {
            const span = [...el.querySelectorAll('.cm-line span')].find(s => s.textContent === 'import');
            const probe = document.createElement('span');
            probe.style.color = 'var(--jp-mirror-editor-keyword-color)';
            el.appendChild(probe);
            const want = getComputedStyle(probe).color;
            probe.remove();
            return span ? [getComputedStyle(span).color, want] : null;
        }""",
        inserted.element_handle(),
    )
    assert keyword_colour is not None and keyword_colour[0] == keyword_colour[1]
    marks.first.hover()
    page.locator(".cm-tooltip .nbtune-tooltip").wait_for(timeout=10_000)
    screenshot(page, "lab-template-inserted-annotations")


def test_the_tuning_panel_shows_a_search_of_the_kernel_session_to_its_end(jupyterlab_server, page):
    open_notebook(jupyterlab_server, page, "panel.ipynb", [SETUP, QUICK])
    page.locator('.lm-TabBar-tab[data-id="nbtune-tuning-panel"]').click()
    panel = page.locator("#nbtune-tuning-panel")
    panel.wait_for(timeout=WAIT)
    page.locator('#nbtune-tuning-panel[data-state="absent"]').wait_for(timeout=WAIT)
    assert "nbtune is not loaded" in panel.inner_text() and "%load_ext nbtune" in panel.inner_text()
    screenshot(page, "lab-panel-nbtune-not-loaded")

    run_cell(page, 0)
    page.locator('#nbtune-tuning-panel[data-state="ready"]').wait_for(timeout=WAIT)
    assert "No searches in this kernel session yet" in panel.inner_text()

    run_cell(page, 1)
    page.locator('.nbtune-search[data-status="running"]').wait_for(timeout=WAIT)
    screenshot(page, "lab-panel-search-running")
    done = page.locator('.nbtune-search[data-status="completed"]')
    done.wait_for(timeout=WAIT)
    assert done.count() == 1
    assert done.locator(".nbtune-search-name").inner_text() == "_tune: loss"
    assert done.locator(".nbtune-search-counts").inner_text().startswith("6/6 trials · ok 6")
    assert done.locator(".nbtune-search-progress").evaluate("p => [p.value, p.max]") == [6, 6]
    assert done.locator(".nbtune-search-best").inner_text().startswith("best loss = ")
    assert done.locator(".nbtune-search-params").inner_text().startswith("x=")
    link = done.locator("a.nbtune-search-mlflow")
    assert link.get_attribute("href").startswith("http://127.0.0.1:5999/#/experiments/")
    screenshot(page, "lab-panel-search-finished")
