"""Parse a `%%tune` cell: annotated assignments, the training body, the names it reads."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

from nbtune._errors import TuneUsageError
from nbtune.cell._annotations import NOT_TOP_LEVEL, annotation_comments, claim_name, statement_marks, target_name
from nbtune.cell._space import Param, parse_annotation


@dataclass
class CellSpec:
    """A parsed cell: its parameters and the body that runs once per trial."""

    source: str
    body: ast.Module  # the cell with annotated assignments replaced by `pass`
    params: list[Param] = field(default_factory=list)
    reads: set[str] = field(default_factory=set)
    binds: set[str] = field(default_factory=set)
    line_offset: int = 0  # add to a body line number to get the line the user sees


def _default(stmt: ast.stmt) -> object:
    value = getattr(stmt, "value", None)
    try:
        return ast.literal_eval(value) if value is not None else None
    except ValueError:
        return None


def parse_cell(source: str, line_offset: int = 0) -> CellSpec:
    """Parse cell text (already transformed from IPython syntax) into a CellSpec.

    `line_offset` is how many lines precede the body in what the user sees
    (1 for the `%%tune` header line), so errors name the line in the cell.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        line = exc.lineno + line_offset if exc.lineno else None
        raise TuneUsageError(f"syntax error in the cell: {exc.msg}", line) from None
    comments = annotation_comments(source, partial=False)

    params: list[Param] = []
    body: list[ast.stmt] = []
    seen: set[str] = set()
    owned, stray = statement_marks(tree.body, comments)
    for stmt, marks in owned:
        if not marks:
            body.append(stmt)
            continue
        last = marks[-1]  # several marks on one statement is an error; it is reported at the last
        name = claim_name(target_name(stmt), len(marks), seen, last + line_offset)
        params.append(parse_annotation(name, comments[last].text, last + line_offset, _default(stmt)))
        # The trial's value is injected instead of the default, so the assignment goes.
        body.append(ast.copy_location(ast.Pass(), stmt))
    if stray:
        raise TuneUsageError(NOT_TOP_LEVEL, stray[0] + line_offset)

    module = ast.Module(body=body, type_ignores=[])
    reads, binds = _names(module)
    return CellSpec(source, module, params, reads, binds, line_offset)


def _names(tree: ast.AST) -> tuple[set[str], set[str]]:
    """Names read and names bound anywhere in the tree (over-approximate, on purpose)."""
    reads: set[str] = set()
    binds: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (binds if isinstance(node.ctx, (ast.Store, ast.Del)) else reads).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            binds.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            binds.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            reads.update(node.names)
    return reads, binds
