"""Parse a `%%tune` cell: annotated assignments, the training body, the names it reads."""

from __future__ import annotations

import ast
import io
import tokenize
from dataclasses import dataclass, field

from nbtune._errors import TuneUsageError
from nbtune.cell._space import Param, parse_annotation

_MARK = "tune:"


@dataclass
class CellSpec:
    """A parsed cell: its parameters and the body that runs once per trial."""

    source: str
    body: ast.Module  # the cell with annotated assignments replaced by `pass`
    params: list[Param] = field(default_factory=list)
    reads: set[str] = field(default_factory=set)
    binds: set[str] = field(default_factory=set)
    line_offset: int = 0  # add to a body line number to get the line the user sees


def _annotation_comments(source: str, offset: int) -> dict[int, str]:
    """Map line number -> text after `# tune:` for every annotation comment."""
    found: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                text = tok.string.lstrip("#").strip()
                if text.startswith(_MARK):
                    found[tok.start[0]] = text[len(_MARK) :].strip()
    except (tokenize.TokenError, IndentationError) as exc:  # ast.parse reports these better
        raise TuneUsageError(f"cannot tokenize the cell: {exc}") from None
    return found


def _target_name(stmt: ast.stmt) -> str | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


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
    comments = _annotation_comments(source, line_offset)

    params: list[Param] = []
    body: list[ast.stmt] = []
    for stmt in tree.body:
        lines = range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1)
        marks = [n for n in lines if n in comments]
        if not marks:
            body.append(stmt)
            continue
        line = marks[-1]
        name = _target_name(stmt)
        if name is None or len(marks) > 1:
            raise TuneUsageError("'# tune:' must end a top-level assignment 'NAME = DEFAULT'", line + line_offset)
        if any(p.name == name for p in params):
            raise TuneUsageError(f"parameter '{name}' is annotated twice", line + line_offset)
        params.append(parse_annotation(name, comments.pop(line), line + line_offset, _default(stmt)))
        # The trial's value is injected instead of the default, so the assignment goes.
        body.append(ast.copy_location(ast.Pass(), stmt))
        for n in marks:
            comments.pop(n, None)
    if comments:
        line = min(comments)
        raise TuneUsageError("'# tune:' must end a top-level assignment 'NAME = DEFAULT'", line + line_offset)

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
