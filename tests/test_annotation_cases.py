"""The shared table of `# tune:` cases, read by nbtune's parser (the TypeScript reader reads it too)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from nbtune._errors import TuneUsageError
from nbtune.cell._parse import parse_cell
from nbtune.cell._read import read_cell

CASES = json.loads((Path(__file__).parent / "annotation_cases.json").read_text(encoding="utf-8"))["cases"]
IDS = [c["cell"].splitlines()[-1][:50] if c["cell"] else "empty" for c in CASES]


def expected(case: dict) -> list[dict]:
    return [{k: a[k] for k in ("line", "name", "reading", "error") if k in a} for a in case["read"]]


def magic_reading(cell: str) -> list[tuple[int | None, str, str]] | TuneUsageError:
    """What the magic makes of the cell: (line, name, reading) per parameter, or its error."""
    offset = 1 if cell.startswith("%%tune") else 0
    body = cell.partition("\n")[2] if offset else cell
    try:
        spec = parse_cell(TransformerManager().transform_cell(body), line_offset=offset)
    except TuneUsageError as exc:
        return exc
    return [(p.line, p.name, p.describe()) for p in spec.params]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_magic_reads_each_case_as_the_table_says(case):
    want = expected(case)
    got = magic_reading(case["cell"])
    errors = [(a["line"], a["error"]) for a in want if "error" in a]
    if errors:
        # The magic stops at its first mistake; it must be one the table lists, word for word.
        assert isinstance(got, TuneUsageError), got
        assert (got.line, got.reason) in errors
        assert "\n" not in str(got)
    else:
        assert got == [(a["line"], a["name"], a["reading"]) for a in want]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_lab_reader_reports_every_annotation_as_the_table_says(case):
    got = read_cell(case["cell"])["annotations"]
    assert [{k: a[k] for k in ("line", "name", "reading", "error") if k in a} for a in got] == expected(case)
    for a in got:
        if "error" in a:
            assert a["message"] == f"line {a['line']}: {a['error']}"


def test_the_lab_reader_gives_the_comment_position_for_decorations():
    (a,) = read_cell("%%tune\nlr = 1e-3    # tune: loguniform(1e-5, 1e-1)\nloss = lr")["annotations"]
    assert (a["line"], a["column"], a["length"]) == (2, 13, len("# tune: loguniform(1e-5, 1e-1)"))


def test_the_lab_reader_passes_on_the_magics_first_error_for_the_whole_cell():
    assert read_cell("%%tune\nx = 1  # tune: uniform(0, 1)\nloss = x +\n")["cell_error"] == (
        "line 3: syntax error in the cell: invalid syntax"
    )
    assert read_cell("%%tune\nx = 1  # tune: uniform(0, 1)\nloss = x\n")["cell_error"] is None


def test_a_cell_that_does_not_parse_yet_still_gets_its_annotations_read():
    got = read_cell("%%tune\nlr = 0.1  # tune: loguniform(1e-4, 1)\nmodel = build(\n")["annotations"]
    assert [(a["line"], a.get("reading")) for a in got] == [(2, "lr: loguniform(lo=0.0001, hi=1)")]
