"""Spread the groups over Spark tasks so that a few large groups do not leave slots idle at the end.

Each group gets an id and a partition, largest groups first onto the least loaded partition (LPT);
the rows are shuffled once straight to their partition (no row goes through the driver), and
`groupBy(SALT, GID)` then needs no second shuffle. A partition is chosen through a "salt": a number
whose Spark hash lands in that partition, so `repartition(n, SALT)` puts each group exactly there.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any

from nbtune.groups._task import GID, SALT

# More tasks than slots, so a slow task is not a slot's whole share; few, as each Python task costs ~0.1-0.3 s
# to start here (the groups are already balanced by size, largest first).
PARTITIONS_PER_SLOT = 2


@dataclass
class Layout:
    """The groups (keys and row counts, by id) and the partition each one runs in."""

    keys: list[tuple[Any, ...]]  # group id -> its key values
    rows: list[int]  # group id -> its number of rows
    partitions: int
    salts: list[int]  # group id -> the salt of its partition


def plan_layout(sizes: list[tuple[tuple[Any, ...], int]], slots: int, salt_of: list[int]) -> Layout:
    """Ids in order of size (largest first) and a partition for each, least loaded first."""
    ordered = sorted(sizes, key=lambda kv: -kv[1])
    n = len(salt_of)
    loads = [(0, p) for p in range(n)]
    salts = []
    for _, rows in ordered:
        load, p = heapq.heappop(loads)
        salts.append(salt_of[p])
        heapq.heappush(loads, (load + max(rows, 1), p))
    return Layout([k for k, _ in ordered], [r for _, r in ordered], n, salts)


def partition_count(groups: int, slots: int) -> int:
    """How many tasks the groups are spread over."""
    return max(1, min(groups, slots * PARTITIONS_PER_SLOT))


def find_salts(spark: Any, n: int) -> list[int]:
    """For each partition p < n, a number that `repartition(n, col)` sends to p (one small Spark query)."""
    from pyspark.sql import functions as F

    found: dict[int, int] = {}
    span = 32 * n
    while len(found) < n:
        rows = spark.range(span).select("id", F.expr(f"pmod(hash(id), {n})").alias("p")).collect()
        for row in rows:
            found.setdefault(int(row["p"]), int(row["id"]))
        span *= 8
    return [found[p] for p in range(n)]


def laid_out(spark: Any, df: Any, keys: list[str], layout: Layout) -> Any:
    """`df` with each row's group id and salt, shuffled so each group sits in its partition."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import LongType, StructField, StructType

    fields = {f.name: f for f in df.schema.fields}
    alias = [f"__nbtune_key{i}" for i in range(len(keys))]
    schema = StructType(
        [StructField(a, fields[k].dataType, True) for a, k in zip(alias, keys, strict=True)]
        + [StructField(GID, LongType(), False), StructField(SALT, LongType(), False)]
    )
    table = [(*key, gid, salt) for gid, (key, salt) in enumerate(zip(layout.keys, layout.salts, strict=True))]
    mapping = spark.createDataFrame(table, schema)
    # Null-safe: a null key is a group of its own, as in groupBy.
    on = [df[k].eqNullSafe(mapping[a]) for k, a in zip(keys, alias, strict=True)]
    joined = df.join(F.broadcast(mapping), on, "inner").drop(*alias)
    return joined.repartition(layout.partitions, SALT)
