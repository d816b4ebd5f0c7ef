"""`--hopper --data DF` with a Spark DataFrame: its rows split by slot on the cluster, never through the driver.

The cell trains on the DataFrame's columns, `model.fit(df["features"], df["label"], ...)`.
Each slot's Spark task reads its own rows and stacks them into arrays on its worker, where
they stay for the search; a relaunched slot reads the same rows again (the split is a hash of
each row's values, so it does not depend on how the DataFrame is partitioned).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nbtune._errors import TuneUsageError

if TYPE_CHECKING:
    from nbtune.hopper._plan import FitCall

SLOT = "__nbtune_slot"  # the column that says which slot a row goes to (-1: validation)
_BUCKETS = 1_000_000  # resolution of validation_split over the row hashes


@dataclass
class FramePlan:
    """The DataFrame's training rows by slot, and the validation rows (collected: every worker gets them)."""

    name: str  # the notebook variable; on a worker the cell sees {column: array} under this name
    columns: list[str]
    frame: Any  # the fit's columns (vectors as arrays), with SLOT
    validation: dict[str, Any] | None
    slot_rows: list[int]  # training rows each slot holds
    fit: FitCall

    @property
    def rows(self) -> int:
        """Training rows (after the validation split)."""
        return sum(self.slot_rows)

    def slot(self, slot: int) -> Any:
        """The DataFrame of the rows slot `slot` holds, read by one Spark task."""
        from pyspark.sql import functions as F

        return self.frame.where(F.col(SLOT) == slot).drop(SLOT).coalesce(1)


def make_frame_plan(name: str, df: Any, fit: FitCall, workers: int, seed: int | None) -> FramePlan:
    """Check the fit call's columns against the DataFrame; count each slot's rows and collect the validation rows."""
    from pyspark.sql import functions as F

    columns = _fit_columns(name, fit)
    fields = {f.name: f.dataType for f in df.schema.fields}
    for column in columns:
        if column not in fields:
            raise TuneUsageError(
                f"model.fit reads {name}[{column!r}], which is not a column of --data {name} "
                f"(it has {', '.join(fields)})",
                fit.line,
            )
        if not _numeric(fields[column]):
            raise TuneUsageError(
                f"column '{column}' of --data {name} is {fields[column].simpleString()}: "
                "the hopper trains on numbers, arrays of numbers or ML vectors",
                fit.line,
            )
    selected = df.select(*[_as_array(F.col(c), fields[c]).alias(c) for c in columns])
    salt = 0 if seed is None else seed
    where = F.pmod(F.xxhash64(F.lit(salt), *[F.col(c) for c in columns]), F.lit(workers))
    if fit.validation_split:
        bucket = F.pmod(F.xxhash64(F.lit(salt + 1), *[F.col(c) for c in columns]), F.lit(_BUCKETS))
        where = F.when(bucket < int(fit.validation_split * _BUCKETS), F.lit(-1)).otherwise(where)
    frame = selected.withColumn(SLOT, where.cast("int"))
    counts = {int(row[0]): int(row[1]) for row in frame.groupBy(SLOT).count().collect()}
    slot_rows = [counts.get(slot, 0) for slot in range(workers)]
    if sum(slot_rows) < workers:
        raise TuneUsageError(
            f"--data {name} has {sum(slot_rows)} training rows, fewer than the {workers} Spark slots it is split over"
        )
    if not all(slot_rows):
        raise TuneUsageError(
            f"--data {name} has too few rows to give each of the {workers} Spark slots some ({sum(slot_rows)} in all)"
        )
    validation = _collect(frame.where(F.col(SLOT) == -1).drop(SLOT), columns) if counts.get(-1) else None
    return FramePlan(name, columns, frame, validation, slot_rows, fit)


def _fit_columns(name: str, fit: FitCall) -> list[str]:
    """The columns the fit call trains on: `fit(DF["x"], DF["y"])`, y optional."""
    if fit.x != name or fit.x_column is None:
        raise TuneUsageError(
            f"--data {name} is a Spark DataFrame: train on its columns, "
            f"e.g. model.fit({name}['features'], {name}['label'], ...)",
            fit.line,
        )
    if fit.y is not None and (fit.y != name or fit.y_column is None):
        raise TuneUsageError(f"model.fit's y must be a column of --data {name}, e.g. {name}['label']", fit.line)
    return [fit.x_column] + ([fit.y_column] if fit.y_column is not None else [])


def _numeric(kind: Any) -> bool:
    """Numbers, (nested) arrays of numbers, or pyspark.ml vectors."""
    from pyspark.sql.types import ArrayType, BooleanType, NumericType

    if type(kind).__name__ == "VectorUDT":
        return True
    if isinstance(kind, ArrayType):
        return _numeric(kind.elementType)
    return isinstance(kind, (NumericType, BooleanType))


def _as_array(column: Any, kind: Any) -> Any:
    """ML vectors become float32 arrays (Arrow has no vector type); other columns pass as they are."""
    if type(kind).__name__ != "VectorUDT":
        return column
    from pyspark.ml.functions import vector_to_array

    return vector_to_array(column, "float32")


def _collect(frame: Any, columns: list[str]) -> dict[str, Any]:
    """A (small) DataFrame's columns as numpy arrays on the driver."""
    from nbtune.hopper._resident import to_arrays

    if hasattr(frame, "toArrow"):  # pyspark >= 4
        table = frame.toArrow()
    else:  # pragma: no cover - pyspark 3.5
        import pyarrow as pa

        table = pa.Table.from_pandas(frame.toPandas(), preserve_index=False)
    return to_arrays(table.to_batches(), columns)
