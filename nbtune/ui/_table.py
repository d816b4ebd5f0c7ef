"""HTML pieces of the dashboard: the trials table (best and newest first), the best result, counts."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nbtune._text import fmt
from nbtune.trial._records import TrialRecord

ROWS = 25  # a table, not a log: the rest is in `_tune.to_pandas()`
_DETAIL_CHARS = 3000  # the tail of a traceback or output shown in the browser
_STYLE = (
    "<style>.nbtune-trials td,.nbtune-trials th{padding:2px 8px;text-align:left;vertical-align:top;"
    "border-bottom:1px solid #ddd}.nbtune-trials pre{white-space:pre-wrap;max-height:20em;overflow:auto;"
    "font-size:11px;margin:2px 0}.nbtune-row-best{background:rgba(46,125,50,.08)}</style>"
)
_STATUS_COLORS = {
    "ok": "#2e7d32",
    "failed": "#c62828",
    "cancelled": "#ef6c00",
    "pruned": "#6d4c41",
    "running": "#1565c0",
}


@dataclass
class RunningTrial:
    """A trial that was handed to a worker and has not finished yet."""

    number: int
    params: dict[str, Any]
    started: float
    step: int = 0  # the last step it reported


def status_badge(status: str) -> str:
    """A colored status word."""
    color = _STATUS_COLORS.get(status, "#555")
    return f'<span class="nbtune-status-{status}" style="color:{color};font-weight:600">{status}</span>'


def best_html(metric: str, mode: str, best: TrialRecord | None) -> str:
    """'best val_loss = 0.312 (min) at trial 7: lr=0.001, batch_size=64'."""
    if best is None:
        return f"<span>best {html.escape(metric)}: no successful trial yet</span>"
    params = ", ".join(f"<b>{html.escape(k)}</b>={html.escape(fmt(v))}" for k, v in best.params.items())
    return (
        f"<span>best <b>{html.escape(metric)} = {html.escape(fmt(best.value))}</b> ({mode}) "
        f"at trial {best.number}: {params}</span>"
    )


def _details(record: TrialRecord) -> str:
    """The one-line error, expandable to the traceback and the captured output."""
    parts = []
    if record.traceback:
        parts.append(f"<pre>{html.escape(_tail(record.traceback))}</pre>")
    if record.output:
        parts.append(f"<div>output:</div><pre>{html.escape(_tail(record.output))}</pre>")
    summary = html.escape(record.error or record.status)
    if not parts:
        return summary
    return f'<details class="nbtune-trial-details"><summary>{summary}</summary>{"".join(parts)}</details>'


def _tail(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else "...\n" + text[-_DETAIL_CHARS:]


def table_rows(
    records: Sequence[TrialRecord], running: Sequence[RunningTrial], best: TrialRecord | None, limit: int = ROWS
) -> list[TrialRecord | RunningTrial]:
    """The rows to show: the best trial first, then the newest (running ones included)."""
    rows: list[TrialRecord | RunningTrial] = [best] if best is not None else []
    both: list[TrialRecord | RunningTrial] = [*records, *running]
    newest = sorted(both, key=lambda r: r.number, reverse=True)
    rows.extend(r for r in newest if r is not best)
    return rows[:limit]


def trials_table(
    records: Sequence[TrialRecord],
    running: Sequence[RunningTrial],
    best: TrialRecord | None,
    columns: tuple[str, Sequence[str], Sequence[str]],
    now: float,
    out: str = "_tune",
) -> str:
    """The trials table as HTML; `columns` is (metric, parameter names, logged metric names)."""
    metric, params, logged = columns
    rows = table_rows(records, running, best)
    show_links = any(isinstance(r, TrialRecord) and r.mlflow_url for r in rows)
    # A pruned trial is no error: its status, value and the step it reached say what happened.
    show_errors = any(isinstance(r, TrialRecord) and r.status not in ("ok", "pruned") for r in rows)
    show_steps = any(r.step for r in rows)
    head = ["trial", "status", metric, "duration (s)", *["step"] * show_steps, *params, *logged]
    head += ["MLflow"] * show_links + ["error"] * show_errors
    out_rows = []
    for row in rows:
        if isinstance(row, RunningTrial):
            cells = [str(row.number), status_badge("running"), "", fmt(now - row.started)]
            cells += [fmt(row.step or None)] * show_steps
            cells += [html.escape(fmt(row.params.get(p))) for p in params] + [""] * len(logged)
            cells += [""] * show_links + [""] * show_errors
            css = "nbtune-row-running"
        else:
            star = " &#9733;" if row is best else ""
            cells = [f"{row.number}{star}", status_badge(row.status), fmt(row.value), fmt(row.duration)]
            cells += [fmt(row.step or None)] * show_steps
            cells += [html.escape(fmt(row.params.get(p))) for p in params]
            cells += [html.escape(fmt(row.log_metrics.get(m))) for m in logged]
            if show_links:
                url = row.mlflow_url
                cells.append(f'<a href="{html.escape(url)}" target="_blank">run</a>' if url else "")
            if show_errors:
                cells.append(_details(row) if row.status not in ("ok", "pruned") else "")
            css = f"nbtune-row-{row.status}" + (" nbtune-row-best" if row is best else "")
        out_rows.append(f'<tr class="{css}">' + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    total = len(records) + len(running)
    note = ""
    if total > len(rows):
        note = (
            f'<div class="nbtune-table-note">{len(rows)} of {total} trials shown (best and newest); '
            f"all of them: <code>{html.escape(out)}.to_pandas()</code></div>"
        )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return (
        f'{_STYLE}<table class="nbtune-trials" style="border-collapse:collapse;font-size:12px">'
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(out_rows)}</tbody></table>{note}"
    )
