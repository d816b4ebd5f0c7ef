"""Distributions of `# tune:` annotations and their hyperopt search space."""

from __future__ import annotations

import ast
import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from nbtune._errors import TuneUsageError

# name -> (argument names, help). Kept in one table so parsing, errors and the
# JupyterLab tooltips all describe a distribution the same way.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "uniform": ("lo", "hi"),
    "loguniform": ("lo", "hi"),
    "quniform": ("lo", "hi", "q"),
    "qloguniform": ("lo", "hi", "q"),
    "normal": ("mu", "sigma"),
    "lognormal": ("median", "sigma"),
    "randint": ("lo", "hi"),
    "choice": (),
}


@dataclass(frozen=True)
class Param:
    """One tunable parameter: its name, distribution and arguments, in the user's units."""

    name: str
    dist: str
    args: tuple[Any, ...]
    line: int | None = None
    default: Any = None

    def to_hyperopt(self) -> Any:
        """Return the hyperopt expression for this parameter."""
        from hyperopt import hp  # here, not at import: hyperopt takes 2 s to import (and pulls in pyspark)

        n, a = self.name, self.args
        if self.dist == "uniform":
            return hp.uniform(n, a[0], a[1])
        if self.dist == "loguniform":
            # hp.loguniform takes bounds in log space; the annotation uses real units.
            return hp.loguniform(n, math.log(a[0]), math.log(a[1]))
        if self.dist == "quniform":
            return hp.quniform(n, a[0], a[1], a[2])
        if self.dist == "qloguniform":
            return hp.qloguniform(n, math.log(a[0]), math.log(a[1]), a[2])
        if self.dist == "normal":
            return hp.normal(n, a[0], a[1])
        if self.dist == "lognormal":
            return hp.lognormal(n, math.log(a[0]), a[1])
        if self.dist == "randint":
            return hp.randint(n, a[0], a[1])
        return hp.choice(n, list(a))

    def convert(self, value: Any) -> Any:
        """Turn a value hyperopt produced into the type the user wrote (ints stay ints)."""
        if self.dist in ("quniform", "qloguniform") and all(isinstance(x, int) for x in self.args):
            return round(value)
        if self.dist == "randint":
            return int(value)
        if isinstance(value, float) and self.dist not in ("choice",):
            return float(value)
        return value

    def cell_value(self) -> Any:
        """The value the cell assigns, in hyperopt's units (a choice's index), or a UsageError if it cannot be one."""
        value, where = self.default, f"--start-from-cell: {self.name} = {self.default!r}"
        if value is None:  # not a literal (an expression), or nothing assigned
            raise TuneUsageError(f"--start-from-cell: the cell must assign {self.name} a literal value", self.line)
        if self.dist == "choice":
            for index, option in enumerate(self.args):
                if type(option) is type(value) and option == value:
                    return index
            raise TuneUsageError(f"{where} is not one of its choices ({', '.join(map(repr, self.args))})", self.line)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TuneUsageError(f"{where}: the cell must assign a number to start from", self.line)
        if self.dist in ("uniform", "loguniform", "quniform", "qloguniform", "randint"):
            lo, hi = self.args[0], self.args[1]
            inside = lo <= value < hi if self.dist == "randint" else lo <= value <= hi
            if not inside:
                raise TuneUsageError(f"{where} is outside {self.describe().split(': ', 1)[1]}", self.line)
        if self.dist == "lognormal" and value <= 0:
            raise TuneUsageError(f"{where}: a lognormal value must be positive", self.line)
        return value

    def describe(self) -> str:
        """Say in words how the annotation was read, e.g. for tooltips and reprs."""
        if self.dist == "choice":
            return f"{self.name}: one of {', '.join(map(repr, self.args))}"
        if self.dist == "randint":
            return f"{self.name}: integer {self.args[0]} <= x < {self.args[1]}"
        names = DISTRIBUTIONS[self.dist]
        shown = ", ".join(f"{k}={v!r}" for k, v in zip(names, self.args, strict=True))
        return f"{self.name}: {self.dist}({shown})"


@dataclass
class SearchSpace:
    """The parameters of one search and how to turn hyperopt's values into the user's."""

    params: list[Param] = field(default_factory=list)
    custom: Mapping[str, Any] | None = None  # a user-provided hyperopt space (--space)

    @property
    def names(self) -> list[str]:
        """Parameter names, in the order they appear."""
        if self.custom is not None:
            return list(self.custom)
        return [p.name for p in self.params]

    def hyperopt_space(self) -> dict[str, Any]:
        """The space as hyperopt sees it."""
        if self.custom is not None:
            return dict(self.custom)
        return {p.name: p.to_hyperopt() for p in self.params}

    def values(self, vals: Mapping[str, list[Any]]) -> dict[str, Any]:
        """Map a trial's `misc.vals` (indices for choices) to the user's values."""
        from hyperopt import space_eval

        flat = {k: v[0] for k, v in vals.items() if len(v)}
        return self.convert(space_eval(self.hyperopt_space(), flat))

    def convert(self, evaluated: Mapping[str, Any]) -> dict[str, Any]:
        """Values hyperopt evaluated (choices resolved) in the types the user wrote."""
        if self.custom is not None:
            return dict(evaluated)
        return {p.name: p.convert(evaluated[p.name]) for p in self.params}

    def cell_point(self) -> dict[str, Any]:
        """The values the cell assigns, in hyperopt's units: `--start-from-cell`'s first trial."""
        if self.custom is not None:
            raise TuneUsageError("--start-from-cell needs '# tune:' annotations, not --space")
        return {p.name: p.cell_value() for p in self.params}

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the parameters' values, in hyperopt's units (choice indices), for `--algo grid`."""
        if self.custom is not None:
            raise TuneUsageError("--algo grid needs '# tune:' annotations, not --space")
        axes = [_grid_axis(p) for p in self.params]
        return [dict(zip(self.names, point, strict=True)) for point in itertools.product(*axes)]

    def grid_algo(self) -> Any:
        """A hyperopt algorithm (like `rand.suggest`) that books the grid's points one after another."""
        points = self.grid()

        def suggest(new_ids: list[int], domain: Any, trials: Any, seed: int) -> list[Any]:
            docs: list[Any] = []
            for new_id in new_ids:
                done = len(trials.trials) + len(docs)  # points already booked (also by a resumed search)
                if done >= len(points):
                    break
                misc = {"tid": new_id, "cmd": domain.cmd, "workdir": domain.workdir}
                misc["idxs"] = {name: [new_id] for name in points[done]}
                misc["vals"] = {name: [value] for name, value in points[done].items()}
                docs.extend(trials.new_trial_docs([new_id], [None], [domain.new_result()], [misc]))
            return docs

        return suggest


def _grid_axis(param: Param) -> list[Any]:
    """One parameter's grid values in hyperopt's units; a continuous parameter has none."""
    lo, hi = (*param.args, None, None)[:2]
    if param.dist == "choice":
        return list(range(len(param.args)))
    if param.dist == "randint":
        return list(range(lo, hi))
    if param.dist == "quniform":
        q = param.args[2]
        return [k * q for k in range(round(lo / q), round(hi / q) + 1)]  # what hp.quniform can return
    raise TuneUsageError(
        f"--algo grid: '{param.name}' is continuous ({param.dist}); a grid takes choice, randint and quniform",
        param.line,
    )


def _literal(node: ast.expr, line: int | None, dist: str) -> Any:
    try:
        return ast.literal_eval(node)
    except ValueError:
        raise TuneUsageError(f"{dist}() arguments must be Python literals, got '{ast.unparse(node)}'", line) from None


def _number(value: Any, what: str, dist: str, line: int | None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TuneUsageError(f"{dist}(): {what} must be a number, got {value!r}", line)
    if not math.isfinite(value):
        raise TuneUsageError(f"{dist}(): {what} must be finite, got {value!r}", line)
    return value


def _check_bounds(dist: str, args: tuple[Any, ...], line: int | None) -> None:
    names = DISTRIBUTIONS[dist]
    for name, value in zip(names, args, strict=True):
        _number(value, name, dist, line)
    if dist in ("uniform", "loguniform", "quniform", "qloguniform", "randint"):
        lo, hi = args[0], args[1]
        if lo >= hi:
            raise TuneUsageError(f"{dist}(): lo must be less than hi, got {lo!r} >= {hi!r}", line)
    if dist in ("loguniform", "qloguniform") and args[0] <= 0:
        raise TuneUsageError(f"{dist}(): bounds must be positive, got lo={args[0]!r}", line)
    if dist in ("quniform", "qloguniform") and args[2] <= 0:
        raise TuneUsageError(f"{dist}(): q must be positive, got {args[2]!r}", line)
    if dist in ("normal", "lognormal") and args[1] <= 0:
        raise TuneUsageError(f"{dist}(): sigma must be positive, got {args[1]!r}", line)
    if dist == "lognormal" and args[0] <= 0:
        raise TuneUsageError(f"lognormal(): median must be positive, got {args[0]!r}", line)
    if dist == "randint" and not all(isinstance(a, int) for a in args):
        raise TuneUsageError(f"randint(): bounds must be integers, got {args!r}", line)


def parse_annotation(name: str, text: str, line: int | None = None, default: Any = None) -> Param:
    """Parse the `DIST(ARGS)` text after `# tune:` into a Param (bounds in real units)."""
    text = text.strip()
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise TuneUsageError(f"cannot read annotation '# tune: {text}' (expected DIST(ARGS))", line) from None
    call = tree.body
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        raise TuneUsageError(f"annotation '# tune: {text}' is not of the form DIST(ARGS)", line)
    dist = call.func.id
    if dist not in DISTRIBUTIONS:
        known = ", ".join(DISTRIBUTIONS)
        raise TuneUsageError(f"unknown distribution '{dist}' (known: {known})", line)
    if call.keywords:
        raise TuneUsageError(f"{dist}() takes positional arguments only", line)
    args = tuple(_literal(a, line, dist) for a in call.args)
    if dist == "choice":
        if len(args) == 1 and isinstance(args[0], (list, tuple)):
            args = tuple(args[0])  # choice([a, b]) reads like hp.choice; accept it too
        if not args:
            raise TuneUsageError("choice() needs at least one option", line)
        return Param(name, dist, args, line, default)
    if dist == "randint" and len(args) == 1:
        args = (0, args[0])
    expected = DISTRIBUTIONS[dist]
    if len(args) != len(expected):
        raise TuneUsageError(f"{dist}() takes {len(expected)} arguments ({', '.join(expected)}), got {len(args)}", line)
    _check_bounds(dist, args, line)
    return Param(name, dist, args, line, default)


def custom_space(value: Any, var: str) -> SearchSpace:
    """Wrap a user's hyperopt space dict given with `--space VAR`."""
    if not isinstance(value, Mapping) or not value:
        raise TuneUsageError(
            f"--space {var}: expected a non-empty dict of hyperopt expressions, got {type(value).__name__}"
        )
    for key in value:
        if not isinstance(key, str) or not key.isidentifier():
            raise TuneUsageError(f"--space {var}: keys must be variable names, got {key!r}")
    if not _has_expression(value):  # else the search runs every trial on the same values
        raise TuneUsageError(f"--space {var}: holds no hyperopt expression such as hp.uniform('x', 0, 1)")
    return SearchSpace(custom=dict(value))


def _has_expression(value: Any) -> bool:
    from hyperopt.pyll import Apply  # only with --space, when the search imports hyperopt anyway

    if isinstance(value, Apply):
        return True
    if isinstance(value, Mapping):
        return any(_has_expression(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_expression(v) for v in value)
    return False


def search_space(params: list[Param], space_var: str | None, namespace: Mapping[str, Any]) -> SearchSpace:
    """The space from the cell's annotations, or from `--space VAR` in the namespace."""
    if space_var is not None:
        if params:
            raise TuneUsageError(f"use either '# tune:' annotations or --space {space_var}, not both")
        if space_var not in namespace:
            raise TuneUsageError(f"--space {space_var}: no variable named '{space_var}' in the notebook")
        return custom_space(namespace[space_var], space_var)
    if not params:
        raise TuneUsageError(
            "nothing to tune: mark a value like 'lr = 0.01  # tune: loguniform(1e-4, 1e-1)' or pass --space VAR"
        )
    return SearchSpace(params=list(params))
