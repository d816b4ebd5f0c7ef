"""`make demo`: run the Fashion-MNIST search notebook headlessly, then report where everything is.

Settings come from the environment (the notebook itself is never edited):

    NBTUNE_DEMO_SMALL=1     a tiny run (2 trials, 1 epoch, 2,000 images), for CI and a quick look
    NBTUNE_DEMO_EVALS=N     trials in the search           (default 12)
    NBTUNE_DEMO_EPOCHS=N    most epochs per trial          (default 9)
    NBTUNE_DEMO_TRAIN=N     training images per trial      (default 60000)
    NBTUNE_DEMO_OUTPUT=DIR  where the results go           (default demo_output/)
    NBTUNE_DATA_DIR=DIR     the four Fashion-MNIST files   (default: keras's cache or download)
"""

from __future__ import annotations

import copy
import html
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "demo_notebooks" / "02_fashion_mnist_spark.ipynb"
DEFAULTS = {"max_evals": 12, "epochs": 9, "n_train": 60000}
SMALL = {"max_evals": 2, "epochs": 1, "n_train": 2000}
_ENV = {"max_evals": "NBTUNE_DEMO_EVALS", "epochs": "NBTUNE_DEMO_EPOCHS", "n_train": "NBTUNE_DEMO_TRAIN"}
# Dashboard parts mirrored on the terminal line (the widgets' CSS classes).
_MIRRORED = ("nbtune-status", "nbtune-best")


def settings(env: dict[str, str] | os._Environ[str] = os.environ) -> dict[str, int]:
    """The search size: the defaults, NBTUNE_DEMO_SMALL's tiny ones, then NBTUNE_DEMO_EVALS/EPOCHS/TRAIN."""
    values = dict(SMALL if env.get("NBTUNE_DEMO_SMALL", "") not in ("", "0") else DEFAULTS)
    for name, var in _ENV.items():
        if env.get(var):
            try:
                values[name] = int(env[var])
            except ValueError:
                raise SystemExit(f"make demo: {var} must be a whole number, got {env[var]!r}") from None
            if values[name] < 1:
                raise SystemExit(f"make demo: {var} must be at least 1, got {env[var]!r}")
    return values


def with_parameters(nb: NotebookNode, values: dict[str, Any]) -> NotebookNode:
    """A copy of the notebook with a cell setting `values` after its `parameters` cell (as papermill does)."""
    nb = copy.deepcopy(nb)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not tagged:
        raise ValueError("the notebook has no cell tagged 'parameters'")
    source = "# Injected parameters\n" + "".join(f"{name} = {value!r}\n" for name, value in values.items())
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    nb.cells.insert(tagged[0] + 1, cell)
    return nb


def _text(fragment: str) -> str:
    """Widget HTML as terminal text, without the counters that are zero."""
    parts = html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip().split(" \u00b7 ")
    return " \u00b7 ".join(p for p in parts if not re.fullmatch(r"(running|failed|cancelled) 0", p))


def _without_clock(line: str) -> str:
    """The line without what changes on its own (clocks, running trials): what is worth a new log line."""
    return re.sub(r"\d+(:\d\d)+ elapsed|ETA \d+(:\d\d)+|running \d+", "", line)


class TerminalClient(NotebookClient):
    """An nbclient that shows the kernel's printed output and a mirror of the dashboard, live.

    On a terminal the dashboard line is redrawn in place; into a pipe or a log (CI) a new line is
    written only when the trial counts or the best result change.
    """

    def __init__(self, nb: NotebookNode, echo: bool = True, **kwargs: Any) -> None:
        super().__init__(nb, **kwargs)
        self.echo = echo
        self._tty = sys.stdout.isatty()
        self._roles: dict[str, str] = {}  # widget comm id -> dashboard part
        self._parts: dict[str, str] = {}
        self._shown = ""
        self._open_line = False

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        """Keep the output, and print what the notebook prints (not its stderr: TensorFlow's noise)."""
        content = msg["content"]
        if self.echo and msg["msg_type"] == "stream" and content.get("name") == "stdout":
            self._write(content["text"])
        return super().output(outs, msg, display_id, cell_index)

    def handle_comm_msg(self, outs: list[NotebookNode], msg: dict[str, Any], cell_index: int) -> None:
        """Keep the widget state, and show the dashboard's counts and best result when they change."""
        super().handle_comm_msg(outs, msg, cell_index)
        data = msg["content"].get("data") or {}
        state = data.get("state") or {}
        comm_id = msg["content"]["comm_id"]
        for cls in state.get("_dom_classes") or ():
            if cls in _MIRRORED:
                self._roles[comm_id] = cls
        role = self._roles.get(comm_id)
        if not (self.echo and role and isinstance(state.get("value"), str)):
            return
        self._parts[role] = _text(state["value"])
        line = "  |  ".join(self._parts[r] for r in _MIRRORED if self._parts.get(r))
        if self._tty:
            width = shutil.get_terminal_size((120, 20)).columns - 1
            self._write("\r" + line[:width].ljust(width), newline=False)
        elif _without_clock(line) != _without_clock(self._shown):
            self._write(line + "\n")
        self._shown = line

    def _write(self, text: str, newline: bool = True) -> None:
        if self._open_line and newline and not text.startswith("\r"):
            sys.stdout.write("\n")  # end the redrawn dashboard line before other output
        sys.stdout.write(text)
        sys.stdout.flush()
        self._open_line = not text.endswith("\n")


def run_notebook(nb: NotebookNode, cwd: Path, log: Path | None = None, echo: bool = True, timeout: int = 3600) -> Any:
    """Execute a notebook in `cwd` with the widget state kept; the kernel's own stdout/stderr go to `log`."""
    client = TerminalClient(
        nb, echo=echo, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.store_widget_state = True
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONWARNINGS": "ignore"}  # C++ and warning noise
    if log is None:
        return client.execute(env=env)
    with log.open("w") as sink:
        return client.execute(env=env, stdout=sink, stderr=sink)


_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def export_html(nb: NotebookNode, path: Path) -> None:
    """The executed notebook as one HTML file that needs no network: plots embedded, no CDN scripts.

    A workshop room may have no internet, and widgets in an HTML export render only with JavaScript
    from a CDN: each widget output shows its static copy instead (the dashboard leaves one, with its
    counts, best result, plots and trials table).
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(mathjax_url="", require_js_url="", jquery_url="")
    body, _ = exporter.from_notebook_node(static_copy(nb))
    path.write_text(body, encoding="utf-8")


def static_copy(nb: NotebookNode) -> NotebookNode:
    """A copy of the notebook with every widget output replaced by its static fallback, and no widget state."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(_WIDGET_VIEW, None)
    return nb


def check_data() -> None:
    """Fail before starting anything if Fashion-MNIST cannot be had (loads or downloads it once)."""
    from nbtune.datasets import fashion_mnist

    try:
        fashion_mnist()
    except Exception as exc:
        raise SystemExit(f"make demo: {exc}") from None


def report(out: Path, wall: float) -> None:
    """Best parameters and test accuracy, where the MLflow runs are and how to open the UI."""
    import pandas as pd

    trials = pd.read_csv(out / "trials.csv")
    ok = trials[trials.status == "ok"]
    pruned = int((trials.status == "pruned").sum())
    print(f"\nnbtune demo: {len(trials)} trials ({len(ok)} ok, {pruned} pruned) in {wall / 60:.1f} min")
    if ok.empty:
        print("no trial succeeded; see the errors in", out / "fashion_mnist.html")
        return
    best = ok.loc[ok.val_loss.idxmin()]
    print(
        f"best parameters: learning_rate={best.learning_rate:.4g}, filters={int(best.filters)}, "
        f"dropout={best.dropout:.3g}"
    )
    print(f"best trial: val_loss={best.val_loss:.4f}, test accuracy={best.test_accuracy:.4f}")
    print(f"best test accuracy of any trial: {ok.test_accuracy.max():.4f}")
    db = out / "mlflow.db"
    if db.exists():
        uri = f"sqlite:///{db}"
        print(f"MLflow runs: {uri} (experiment of the notebook, one run a trial under one search run)")
        print(f"  open the UI: {ROOT / '.venv/bin/mlflow'} ui --backend-store-uri {uri} --port 5000")
        print("  then browse http://127.0.0.1:5000 ; in a notebook started in that folder, %tune_mlflow_ui does it")
        if isinstance(best.get("mlflow_url"), str):
            print(f"  best trial's run: {best.mlflow_url}")
    else:
        print("MLflow: no runs recorded (tracking was off or not available)")
    print(f"executed notebook: {out / 'fashion_mnist.ipynb'}")
    print(f"HTML report with the plots: {out / 'fashion_mnist.html'}")


def main() -> int:
    """Run the demo; 0 on success."""
    values = settings()
    out = Path(os.environ.get("NBTUNE_DEMO_OUTPUT") or ROOT / "demo_output").resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "trials.csv").unlink(missing_ok=True)
    print(
        f"nbtune demo: Fashion-MNIST, {values['max_evals']} trials of up to {values['epochs']} epochs "
        f"on {values['n_train']} images; output in {out}"
    )
    check_data()
    nb = with_parameters(nbformat.read(NOTEBOOK, as_version=4), values)
    start = time.monotonic()
    failed: CellExecutionError | None = None
    try:
        run_notebook(nb, out, log=out / "kernel.log")
    except CellExecutionError as exc:
        failed = exc
    wall = time.monotonic() - start
    nbformat.write(nb, out / "fashion_mnist.ipynb")
    export_html(nb, out / "fashion_mnist.html")
    if failed is not None:
        print(f"\nmake demo: the notebook failed; see {out / 'fashion_mnist.html'} and {out / 'kernel.log'}")
        print(str(failed).strip().splitlines()[-1])
        return 1
    report(out, wall)
    return 0


if __name__ == "__main__":
    sys.exit(main())
