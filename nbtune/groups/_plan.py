"""Check `--by KEY --data DF` against the notebook: one-line UsageErrors before any Spark job runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune.cell._parse import CellSpec


@dataclass
class GroupPlan:
    """What the group search runs over: the Spark DataFrame, its key columns, the variable the cell reads."""

    spark: Any
    df: Any  # a pyspark DataFrame (classic or Spark Connect)
    keys: list[str]
    data: str


def is_spark_frame(value: Any) -> bool:
    """A pyspark DataFrame, classic or Spark Connect (checked without importing pyspark)."""
    kind = type(value)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pyspark.sql")


def is_pandas_frame(value: Any) -> bool:
    """A pandas DataFrame (checked without importing pandas)."""
    kind = type(value)
    return kind.__name__ == "DataFrame" and kind.__module__.startswith("pandas")


def check_cell(spec: CellSpec, options: TuneOptions, namespace: Mapping[str, Any]) -> None:
    """The checks that need no Spark: the variable exists, is a DataFrame, and the cell reads it."""
    name = options.data or ""
    if name not in namespace:
        raise TuneUsageError(f"--data {name}: no such variable in the notebook")
    value = namespace[name]
    if not (is_spark_frame(value) or is_pandas_frame(value)):
        raise TuneUsageError(f"--data {name} must be a Spark or pandas DataFrame, got {type(value).__name__}")
    _check_keys(name, [str(c) for c in value.columns], options.by)
    if name not in spec.reads:
        raise TuneUsageError(f"the cell never reads '{name}' (--data): it holds each group's rows, so train on it")
    if options.resume is not None and not options.mlflow:
        raise TuneUsageError("--resume reads the finished groups from MLflow; drop --no-mlflow")


def make_plan(spark: Any, options: TuneOptions, namespace: Mapping[str, Any]) -> GroupPlan:
    """The Spark DataFrame to group (a pandas one distributed for the user)."""
    name = options.data or ""
    value = namespace[name]
    df = value if is_spark_frame(value) else spark.createDataFrame(value)
    return GroupPlan(spark=spark, df=df, keys=list(options.by), data=name)


def _check_keys(name: str, columns: list[str], keys: tuple[str, ...]) -> None:
    missing = [k for k in keys if k not in columns]
    if missing:
        raise TuneUsageError(f"--by {','.join(missing)}: no such column in {name} (its columns: {', '.join(columns)})")
    if len(set(keys)) != len(keys):
        raise TuneUsageError(f"--by names a column twice: {','.join(keys)}")
    if len(keys) == len(columns):
        raise TuneUsageError(f"--by uses every column of {name}: the cell would see nothing but the keys")
