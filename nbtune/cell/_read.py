"""Read every `# tune:` annotation of a cell for JupyterLab's tooltips, with the magic's own messages.

`parse_cell` stops at the first mistake, as the magic must; an editor wants all of them.
This walks the cell with `parse_cell`'s own scanner (`_annotations`: same comments,
statements and checks, same `parse_annotation`) but records each annotation's reading
or error and goes on.
"""

from __future__ import annotations

import ast
import re
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune.cell._annotations import annotation_comments, claim_name, statement_marks, target_name
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import parse_annotation

_HEADER = re.compile(r"%%tune(?=\s|$)")
_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")


def _transform(body: str) -> str:
    """IPython syntax (`!pip`, `%time`) to Python, as the magic does before parsing."""
    from IPython import get_ipython
    from IPython.core.inputtransformer2 import TransformerManager

    shell = get_ipython()
    if shell is not None:
        return str(shell.transform_cell(body))
    return str(TransformerManager().transform_cell(body))  # type: ignore[no-untyped-call]


def _owners(source: str, lines: set[int]) -> dict[int, tuple[str | None, int]]:
    """Line -> (assigned name or None, number of annotations on the same statement)."""
    owners: dict[int, tuple[str | None, int]] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        # While the user is typing: judge each line on its own.
        text = source.splitlines()
        for n in lines:
            match = _ASSIGNMENT.match(text[n - 1]) if n <= len(text) else None
            owners[n] = (match.group(1) if match else None, 1)
        return owners
    owned, stray = statement_marks(tree.body, lines)
    for stmt, marks in owned:
        for n in marks:
            owners[n] = (target_name(stmt), len(marks))
    for n in stray:  # comments outside every statement
        owners[n] = (None, 1)
    return owners


def read_cell(cell: str) -> dict[str, Any]:
    """Every annotation of a cell (with or without its `%%tune` header) and the magic's first error."""
    offset = 1 if _HEADER.match(cell) else 0
    body = cell.partition("\n")[2] if offset else cell
    source = _transform(body)
    comments = annotation_comments(source, partial=True)
    owners = _owners(source, set(comments))
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n in sorted(comments):
        comment = comments[n]
        name, marks = owners[n]
        entry: dict[str, Any] = {"line": n + offset, "column": comment.column, "length": comment.length, "name": name}
        try:
            param = claim_name(name, marks, seen, n + offset)
            entry["reading"] = parse_annotation(param, comment.text, n + offset).describe()
        except TuneUsageError as exc:
            entry.update(error=exc.reason, message=str(exc))
        found.append(entry)
    try:
        parse_cell(source, line_offset=offset)
        cell_error = None
    except TuneUsageError as exc:
        cell_error = str(exc)
    return {"annotations": found, "cell_error": cell_error}
