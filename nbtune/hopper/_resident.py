"""A DataFrame's rows as the arrays Keras trains on: Arrow columns to numpy, on a worker or on the driver.

Light on purpose (a worker imports it): pyarrow and numpy come with the Spark worker's pandas.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def to_arrays(batches: Iterable[Any], columns: list[str]) -> dict[str, Any]:
    """Column -> a numpy array with one row per DataFrame row (lists of equal length become dimensions)."""
    import pyarrow as pa

    batches = list(batches)
    if not batches or sum(b.num_rows for b in batches) == 0:
        raise ValueError("no rows of --data reached this worker")
    table = pa.Table.from_batches(batches)
    return {name: _column(table.column(name).combine_chunks(), name) for name in columns}


def _column(values: Any, name: str) -> Any:
    import pyarrow as pa

    if values.null_count:
        raise ValueError(f"column '{name}' of --data has {values.null_count} missing values")
    kind = values.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        lengths = values.value_lengths().to_numpy(zero_copy_only=False)
        if len(lengths) and lengths.min() != lengths.max():
            raise ValueError(
                f"column '{name}' of --data holds arrays of different lengths ({lengths.min()} to {lengths.max()})"
            )
        # Every row the same length: the flat values are the array, one dimension more per level of nesting.
        inner = _column(values.flatten(), name)
        return inner.reshape(len(values), int(lengths[0]) if len(lengths) else 0, *inner.shape[1:])
    # Zero-copy for numbers without nulls: the partition is held once, in Arrow's buffers.
    return values.to_numpy(zero_copy_only=False)
