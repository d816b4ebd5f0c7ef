"""Read every `# tune:` annotation of a cell for JupyterLab's tooltips, with the magic's own messages.

`parse_cell` stops at the first mistake, as the magic must; an editor wants all of them.
This walks the cell the way `parse_cell` does (same statements, same checks, same
`parse_annotation`) but records each annotation's reading or error and goes on.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import parse_annotation

_HEADER = re.compile(r"%%tune(?=\s|$)")
_MARK = "tune:"
_NOT_TOP_LEVEL = "'# tune:' must end a top-level assignment 'NAME = DEFAULT'"
_ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)\s*(?::[^=]*)?=(?!=)")


def _transform(body: str) -> str:
    """IPython syntax (`!pip`, `%time`) to Python, as the magic does before parsing."""
    from IPython import get_ipython
    from IPython.core.inputtransformer2 import TransformerManager

    shell = get_ipython()
    if shell is not None:
        return str(shell.transform_cell(body))
    return str(TransformerManager().transform_cell(body))  # type: ignore[no-untyped-call]


def _comments(source: str) -> dict[int, tuple[int, int, str]]:
    """Line -> (column, length, text after `tune:`) of every annotation comment (up to a tokenize error)."""
    found: dict[int, tuple[int, int, str]] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if text.startswith(_MARK):
                    found[tok.start[0]] = (tok.start[1], len(tok.string.rstrip()), text[len(_MARK) :].strip())
    except (tokenize.TokenError, SyntaxError):  # an unfinished cell: what came before still counts
        pass
    return found


def _target_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


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
    remaining = set(lines)
    for stmt in tree.body:
        marks = sorted(n for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1) if n in remaining)
        for n in marks:
            owners[n] = (_target_name(stmt), len(marks))
        remaining -= set(marks)
    for n in remaining:  # comments outside every statement
        owners[n] = (None, 1)
    return owners


def read_cell(cell: str) -> dict[str, Any]:
    """Every annotation of a cell (with or without its `%%tune` header) and the magic's first error."""
    offset = 1 if _HEADER.match(cell) else 0
    body = cell.partition("\n")[2] if offset else cell
    source = _transform(body)
    comments = _comments(source)
    owners = _owners(source, set(comments))
    found: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n in sorted(comments):
        column, length, text = comments[n]
        name, marks = owners[n]
        entry: dict[str, Any] = {"line": n + offset, "column": column, "length": length, "name": name}
        try:
            if name is None or marks > 1:
                raise TuneUsageError(_NOT_TOP_LEVEL, n + offset)
            if name in seen:
                raise TuneUsageError(f"parameter '{name}' is annotated twice", n + offset)
            seen.add(name)
            entry["reading"] = parse_annotation(name, text, n + offset).describe()
        except TuneUsageError as exc:
            entry.update(error=exc.reason, message=str(exc))
        found.append(entry)
    try:
        parse_cell(source, line_offset=offset)
        cell_error = None
    except TuneUsageError as exc:
        cell_error = str(exc)
    return {"annotations": found, "cell_error": cell_error}
