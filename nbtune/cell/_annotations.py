"""Find a cell's `# tune:` comments, the statements they sit on and the names they annotate.

The one scanner behind both readers: `parse_cell` (the magic, which stops at the first
mistake) and `read_cell` (JupyterLab's tooltips, which read a cell while it is typed).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nbtune._errors import TuneUsageError

_MARK = "tune:"
NOT_TOP_LEVEL = "'# tune:' must end a top-level assignment 'NAME = DEFAULT'"


@dataclass(frozen=True)
class Comment:
    """One `# tune:` comment: where it is (for the editor's decorations) and what it says."""

    line: int  # 1-based, in the source scanned
    column: int
    length: int  # of the comment without trailing blanks
    text: str  # after `tune:`, stripped


def annotation_comments(source: str, *, partial: bool) -> dict[int, Comment]:
    """Line -> the `# tune:` comment on it.

    Comments come from tokenize, so `"# tune:"` inside a string is not one. With
    `partial`, a cell that stops tokenizing (one still being typed) keeps the comments
    before that point; without it, that is a TuneUsageError.
    """
    # While typing, any tokenize failure just ends the scan; the magic turns the ones it
    # expects into its own one-line error (ast.parse has already reported most mistakes).
    expected: tuple[type[Exception], ...] = (
        (tokenize.TokenError, SyntaxError) if partial else (tokenize.TokenError, IndentationError)
    )
    found: dict[int, Comment] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if text.startswith(_MARK):
                    line, column = tok.start
                    found[line] = Comment(line, column, len(tok.string.rstrip()), text[len(_MARK) :].strip())
    except expected as exc:
        if not partial:
            raise TuneUsageError(f"cannot tokenize the cell: {exc}") from None
    return found


def statement_marks(
    body: Sequence[ast.stmt], lines: Iterable[int]
) -> tuple[list[tuple[ast.stmt, list[int]]], list[int]]:
    """Each top-level statement with the comment lines it spans, and the lines no statement spans.

    A line goes to the first statement that spans it, so in `a = 1; b = 2  # tune: ...`
    the comment annotates `a`; both readers must agree on that.
    """
    remaining = set(lines)
    owned: list[tuple[ast.stmt, list[int]]] = []
    for stmt in body:
        marks = sorted(n for n in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1) if n in remaining)
        remaining.difference_update(marks)
        owned.append((stmt, marks))
    return owned, sorted(remaining)


def target_name(stmt: ast.stmt) -> str | None:
    """The name a `NAME = DEFAULT` (or `NAME: T = DEFAULT`) statement assigns; None for anything else."""
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        return stmt.targets[0].id
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


def claim_name(name: str | None, marks: int, seen: set[str], line: int) -> str:
    """The parameter an annotation on `line` declares, added to `seen`; or the magic's error.

    `marks` counts the annotations on the same statement: more than one is ambiguous.
    """
    if name is None or marks > 1:
        raise TuneUsageError(NOT_TOP_LEVEL, line)
    if name in seen:
        raise TuneUsageError(f"parameter '{name}' is annotated twice", line)
    seen.add(name)
    return name
