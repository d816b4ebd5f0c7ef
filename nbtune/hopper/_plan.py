"""Check `--hopper --data X,Y` (or `--data DF`) against the cell and the notebook: one-line UsageErrors first."""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune.groups._plan import is_spark_frame
from nbtune.hopper._frame import FramePlan, make_frame_plan

HOPPER_BACKENDS = ("auto", "spark")


@dataclass(frozen=True)
class FitCall:
    """What the cell's `model.fit(...)` says before it runs: its data arguments and validation split."""

    line: int
    x: str | None  # the variable passed as x (None: not a plain name or a column of one)
    y: str | None
    validation_split: float
    x_column: str | None = None  # x is `x[column]` (a column of a Spark DataFrame)
    y_column: str | None = None


@dataclass
class HopperPlan:
    """The training arrays by name, and the rows the fit call's validation_split holds out."""

    names: list[str]
    train: dict[str, Any]
    validation: dict[str, Any] | None  # the tail that validation_split takes, as Keras does
    fit: FitCall

    @property
    def rows(self) -> int:
        """Training rows (after the validation split)."""
        return len(self.train[self.names[0]])


def data_names(options: TuneOptions) -> list[str]:
    """The comma-separated names of --data."""
    return [n.strip() for n in (options.data or "").split(",") if n.strip()]


def check_options(options: TuneOptions) -> None:
    """The option rules of --hopper (no notebook needed): --data names arrays, a backend that can hop."""
    if not options.hopper:
        return
    if options.by:
        raise TuneUsageError(
            "--hopper cannot be used with --by: hop one model set over one dataset, or search per group"
        )
    names = data_names(options)
    if not names:
        raise TuneUsageError(
            "--hopper needs --data X,Y: the notebook arrays model.fit trains on (or one Spark DataFrame)"
        )
    for name in names:
        if not name.isidentifier():
            raise TuneUsageError(f"--data must be variable names separated by commas, got {options.data!r}")
    if options.log_model == "best":
        raise TuneUsageError("--log-model best needs --backend driver; with --hopper use --log-model all")
    if options.backend not in HOPPER_BACKENDS:
        raise TuneUsageError(
            f"--hopper runs on the warm pool of Spark workers: use --backend auto or spark, not {options.backend}"
        )


def find_fit(body: ast.Module, line_offset: int = 0) -> FitCall:
    """The cell's `model.fit(...)` call (the last one), or a UsageError."""
    calls = [
        node
        for node in ast.walk(body)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "fit"
    ]
    if not calls:
        raise TuneUsageError("--hopper trains Keras models: the cell has no model.fit(...) call")
    call = max(calls, key=lambda c: (c.lineno, c.col_offset))
    line = call.lineno + line_offset
    keywords = {k.arg: k.value for k in call.keywords if k.arg is not None}
    x = call.args[0] if call.args else keywords.get("x")
    y = call.args[1] if len(call.args) > 1 else keywords.get("y")
    split = keywords.get("validation_split")
    value: Any = 0.0
    if split is not None:
        try:
            value = ast.literal_eval(split)
        except ValueError:
            raise TuneUsageError("--hopper needs validation_split as a number in the cell", line) from None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
            raise TuneUsageError(f"validation_split must be a number in [0, 1), got {value!r}", line)
    (x_name, x_column), (y_name, y_column) = _name(x), _name(y)
    return FitCall(line, x_name, y_name, float(value), x_column, y_column)


def _name(node: ast.expr | None) -> tuple[str | None, str | None]:
    """`name` -> (name, None); `name["column"]` -> (name, column); anything else -> (None, None)."""
    if isinstance(node, ast.Name):
        return node.id, None
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Name)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.value.id, node.slice.value
    return None, None


def make_plan(
    body: ast.Module, options: TuneOptions, namespace: Mapping[str, Any], workers: int, line_offset: int = 0
) -> HopperPlan | FramePlan:
    """Check --data against the cell's fit call and the notebook: the arrays to partition, or the DataFrame's rows."""
    names = data_names(options)
    fit = find_fit(body, line_offset)
    if len(names) == 1 and is_spark_frame(namespace.get(names[0])):
        return make_frame_plan(names[0], namespace[names[0]], fit, workers, options.seed)
    if fit.x_column is not None:
        raise TuneUsageError(
            f"model.fit reads {fit.x}[{fit.x_column!r}]: with --data naming arrays, pass them whole "
            "(or name one Spark DataFrame in --data)",
            fit.line,
        )
    for role, given in (("x", fit.x), ("y", fit.y)):
        if given is not None and given not in names:
            raise TuneUsageError(f"model.fit trains on '{given}' ({role}), which --data does not name", fit.line)
    if fit.x is None:
        raise TuneUsageError(f"--hopper needs model.fit(X, ...) with X one of --data ({', '.join(names)})", fit.line)
    arrays: dict[str, Any] = {}
    for name in names:
        if name not in namespace:
            raise TuneUsageError(f"--data {name}: no such variable in the notebook")
        value = namespace[name]
        if not _is_array(value):
            raise TuneUsageError(
                f"--data {name} must be an array (numpy-like) or one Spark DataFrame, got {type(value).__name__}"
            )
        arrays[name] = value
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        sizes = ", ".join(f"{n} has {k}" for n, k in lengths.items())
        raise TuneUsageError(f"--data arrays must have the same number of rows: {sizes}")
    rows = next(iter(lengths.values()))
    held = int(rows * fit.validation_split)  # Keras takes the last rows, before shuffling
    train = {n: a[: rows - held] for n, a in arrays.items()}
    validation = {n: a[rows - held :] for n, a in arrays.items()} if held else None
    if rows - held < workers:
        raise TuneUsageError(
            f"--data has {rows - held} training rows, fewer than the {workers} Spark slots it is split over"
        )
    return HopperPlan(names, train, validation, fit)


def _is_array(value: Any) -> bool:
    """An n-dimensional array with rows (numpy, or anything with shape, dtype and slicing)."""
    shape = getattr(value, "shape", None)
    return isinstance(shape, tuple) and len(shape) >= 1 and hasattr(value, "dtype") and hasattr(value, "__getitem__")


def partition(train: Mapping[str, Any], parts: int, seed: int | None) -> list[dict[str, Any]]:
    """The rows shuffled once and cut into `parts` near-equal partitions, the same rows of every array."""
    import numpy as np

    rows = len(next(iter(train.values())))
    order = np.random.default_rng(seed).permutation(rows)
    return [
        {name: np.ascontiguousarray(a[chunk]) for name, a in train.items()} for chunk in np.array_split(order, parts)
    ]
