"""Model hopper parallelism against the pool's task parallelism: the same Keras search, side by side.

Fashion-MNIST, 8 configurations x 4 epochs on P=2 Spark slots by default. The task-parallel
search (the warm pool: every worker holds all the training data) and the same search (same seed,
same configurations) with `--hopper` (each worker holds 1/P of it and the models hop) run in
pairs, `--repeats` times, alternating which goes first. Printed: data resident per worker (bytes
sent to each worker before its first trial or hop), the best validation accuracy of each, the wall
time ratio, bytes moved per epoch (the hopper: model weights and optimizer state each sub-epoch),
and the median wall ratio.

    NBTUNE_DATA_DIR=../shared/data/fashion-mnist .venv/bin/python benchmarks/bench_hopper.py
    .venv/bin/python benchmarks/bench_hopper.py --n-train 2000 --max-evals 2 --epochs 1   # a smoke run

`--frame` gives the hopper the training set as a Spark DataFrame read from Parquet (written once,
with pyarrow) instead of notebook arrays: each slot's task reads its own rows, and none passes
through the driver.

`--memory-cap 5g --enlarge 8` runs instead the case task parallelism cannot do: Spark caps each
Python worker's memory (`spark.executor.pyspark.memory`, an address-space limit), the training
set is Fashion-MNIST repeated 8 times (1.5 GB), and the same small search runs on both sides.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

CELL = """
import keras
learning_rate = 1e-3  # tune: loguniform(1e-4, 1e-2)
units = 128  # tune: choice(64, 128, 256)
batch_size = 64  # tune: choice(32, 64, 128)
model = keras.Sequential([
    keras.Input((784,)),
    keras.layers.Dense(units, activation="relu"),
    keras.layers.Dense(10),
])
model.compile(
    optimizer=keras.optimizers.Adam(learning_rate),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(x_train, y_train, batch_size=batch_size, epochs=EPOCHS, validation_data=(x_val, y_val), verbose=0)
val_accuracy = history.history["val_accuracy"][-1]
"""


def data(n_train: int, epochs: int) -> dict[str, Any]:
    """The notebook variables the cell reads: flattened images in [0, 1], the test set as validation."""
    from nbtune.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist()
    return {
        "x_train": (x[:n_train].reshape(-1, 784) / 255.0).astype("float32"),
        "y_train": y[:n_train].astype("int32"),
        "x_val": (xt.reshape(-1, 784) / 255.0).astype("float32"),
        "y_val": yt.astype("int32"),
        "EPOCHS": epochs,
    }


def enlarged(namespace: dict[str, Any], times: int) -> dict[str, Any]:
    """The training arrays repeated `times` times (a training set larger than a worker may hold)."""
    import numpy as np

    return {
        **namespace,
        "x_train": np.concatenate([namespace["x_train"]] * times),
        "y_train": np.concatenate([namespace["y_train"]] * times),
    }


def as_frame(namespace: dict[str, Any], folder: str) -> dict[str, Any]:
    """The training arrays written to Parquet (no Spark: the driver's JVM never holds them) and read as `df`."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import SparkSession

    x, y = namespace["x_train"], namespace["y_train"]
    path = os.path.join(folder, "train.parquet")
    schema = pa.schema([("pixels", pa.list_(pa.float32())), ("label", pa.int32())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, len(x), 20000):
            chunk = x[start : start + 20000]
            offsets = pa.array(np.arange(0, chunk.size + 1, chunk.shape[1], dtype=np.int32))
            pixels = pa.ListArray.from_arrays(offsets, pa.array(chunk.reshape(-1)))
            writer.write_table(pa.table({"pixels": pixels, "label": pa.array(y[start : start + 20000])}, schema))
    frame = {k: v for k, v in namespace.items() if k not in ("x_train", "y_train")}
    spark = SparkSession.getActiveSession()
    return {**frame, "df": spark.read.parquet(path), "x_train": x, "y_train": y}  # arrays kept for the pool


def memory_cap(args: argparse.Namespace) -> None:
    """Both searches under a per-worker memory cap with an enlarged training set: which one completes."""
    from pyspark.sql import SparkSession

    SparkSession.builder.master(f"local[{args.slots}]").config("spark.driver.host", "127.0.0.1").config(
        "spark.driver.bindAddress", "127.0.0.1"
    ).config("spark.ui.enabled", "false").config("spark.executor.pyspark.memory", args.memory_cap).getOrCreate()
    namespace = enlarged(data(args.n_train, args.epochs), args.enlarge)
    size = namespace["x_train"].nbytes + namespace["y_train"].nbytes
    print(
        f"memory cap per Python worker: {args.memory_cap} (spark.executor.pyspark.memory); training set "
        f"{len(namespace['x_train'])} rows, {size / 1e9:.2f} GB; {args.max_evals} configurations x {args.epochs} "
        f"epochs, P={args.slots}; load average before: {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    if args.frame:
        namespace = as_frame(namespace, os.getcwd())
    for name, search in (("task parallelism (nbtune pool)", pool_search), ("model hopper (--hopper)", hopper_search)):
        started = time.monotonic()
        try:
            result, figures = search(namespace, args)
        except Exception as exc:  # the search's own error: what a user would see
            print(f"\n== {name}: failed after {time.monotonic() - started:.0f} s: {str(exc).splitlines()[0]}")
            continue
        table = result.to_pandas()
        counts = ", ".join(f"{n} {status}" for status, n in table.status.value_counts().items())
        print(
            f"\n== {name}: {counts} in {result.wall_time:.0f} s; training data per worker "
            f"{figures['training'] / 1e9:.2f} GB; best val_accuracy {table.val_accuracy.max():.4f}"
        )
        errors = table.error.dropna().unique() if "error" in table else []
        for error in errors[:2]:
            print(f"   error: {error}")


def options(args: argparse.Namespace, hopper: bool) -> Any:
    """The search's options; the hopper's are built directly (`--data X,Y` without `--by` is the hopper's form)."""
    from nbtune._options import TuneOptions

    common: dict[str, Any] = dict(
        max_evals=args.max_evals,
        metric="val_accuracy",
        mode="max",
        seed=args.seed,
        mlflow=False,
        quiet=args.quiet,
        backend="spark",
        algo="random",  # the same configurations in both searches, whatever order they finish in
    )
    if hopper:
        data = "df" if args.frame else "x_train,y_train"
        return TuneOptions(**common, hopper=True, data=data, parallelism=args.models)
    return TuneOptions(**common, parallelism=args.slots)


def pool_search(namespace: dict[str, Any], args: argparse.Namespace) -> tuple[Any, dict[str, float]]:
    """Task parallelism on the warm pool; the bytes each worker received (the objective with all the data)."""
    from nbtune._run import run_search
    from nbtune.cell._parse import parse_cell
    from nbtune.cell._space import search_space
    from nbtune.search._build import build_objective
    from nbtune.trial._payload import pack

    opts = options(args, hopper=False)
    spec = parse_cell(CELL)
    objective = build_objective(spec, namespace, opts, search_space(spec.params, None, namespace).names)
    resident = pack(objective).size  # what the pool sends each worker once: the cell and everything it reads
    training = namespace["x_train"].nbytes + namespace["y_train"].nbytes
    result = run_search(spec, opts, namespace)
    epochs = sum(max((s for s, _ in r.curve), default=0) for r in result.records)
    figures = {"resident": resident, "training": training, "sent": resident * args.slots, "epochs": epochs}
    return result, figures


def hopper_search(namespace: dict[str, Any], args: argparse.Namespace) -> tuple[Any, dict[str, float]]:
    """Model hopper parallelism; the bytes each worker received (its partition, the cell and validation data)."""
    from nbtune.cell._parse import parse_cell
    from nbtune.cell._space import search_space
    from nbtune.hopper._search import hopper_search as build
    from nbtune.search._build import build_objective
    from nbtune.search._reports import ReportHub

    opts = options(args, hopper=True)
    if args.frame:  # the cell trains on the DataFrame's columns; the arrays are not in the notebook
        spec = parse_cell(CELL.replace("model.fit(x_train, y_train", 'model.fit(df["pixels"], df["label"]'))
        namespace = {k: v for k, v in namespace.items() if k not in ("x_train", "y_train")}
    else:
        spec = parse_cell(CELL)
    space = search_space(spec.params, None, namespace)
    objective = build_objective(spec, namespace, opts, space.names)
    search = build(objective, space, opts, namespace, [], None, None, ReportHub(opts))
    executor: Any = search.executor
    payload = executor.payload_bytes
    result = search.run()
    traffic = executor.traffic
    # With --frame nothing of the training set goes over the channel: count the rows each task holds.
    partitions = traffic.partition_bytes or {k: n * (784 * 4 + 4) for k, n in traffic.partition_rows.items()}
    epochs = sum(max((s for s, _ in r.curve), default=0) for r in result.records)
    figures = {
        "resident": payload + max(partitions.values()),
        "training": max(partitions.values()),
        "sent": payload * len(partitions) + sum(traffic.partition_bytes.values()),
        "hop_bytes": traffic.hop_bytes_sent + traffic.hop_bytes_received,
        "hops": traffic.hops,
        "epochs": epochs,
    }
    return result, figures


def describe(name: str, result: Any, figures: dict[str, float]) -> float:
    """Print one search's figures; its best validation accuracy."""
    table = result.to_pandas()
    best = float(table.val_accuracy.max())
    counts = ", ".join(f"{n} {status}" for status, n in table.status.value_counts().items())
    print(f"\n== {name}: {len(table)} trials ({counts}), wall {result.wall_time:.1f} s")
    print(
        f"resident per worker: {figures['resident'] / 1e6:.1f} MB, of which training data "
        f"{figures['training'] / 1e6:.1f} MB (the rest: the cell, validation data); "
        f"sent once to all workers: {figures['sent'] / 1e6:.1f} MB"
    )
    print(f"best val_accuracy: {best:.4f}; model-epochs trained: {int(figures['epochs'])}")
    epochs = max(figures["epochs"], 1)
    if "hop_bytes" in figures:
        print(
            f"bytes moved per model-epoch after that: {figures['hop_bytes'] / epochs / 1e6:.3f} MB "
            f"(weights and optimizer state, {int(figures['hops'])} hops)"
        )
    else:
        print("bytes moved per model-epoch after that: none (a trial's request and outcome only)")
    print(f"sent once, per model-epoch: {figures['sent'] / epochs / 1e6:.2f} MB")
    return best


def main() -> None:
    """Parse the arguments, run both searches, print the comparison."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--max-evals", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--slots", type=int, default=2, help="P: Spark slots (local[P])")
    parser.add_argument("--models", type=int, default=None, help="hopper: models training together (default: 2P)")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of searches; the ratio is their median")
    parser.add_argument("--memory-cap", default=None, help="e.g. 5g: the capped case instead (see above)")
    parser.add_argument("--enlarge", type=int, default=8, help="with --memory-cap: the training set repeated")
    parser.add_argument("--frame", action="store_true", help="the hopper reads a Spark DataFrame (see above)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["NBTUNE_SPARK_MASTER"] = f"local[{args.slots}]"
    os.chdir(tempfile.mkdtemp(prefix="bench_hopper_"))
    if args.memory_cap:
        memory_cap(args)
        return
    from nbtune.spark._session import start_local_session

    start_local_session()
    namespace = data(args.n_train, args.epochs)
    if args.frame:
        namespace = as_frame(namespace, os.getcwd())
    print(
        f"Fashion-MNIST: {args.max_evals} configurations x {args.epochs} epochs on {args.n_train} images, "
        f"P={args.slots}, {os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}"
    )
    started = time.monotonic()
    warm = argparse.Namespace(**{**vars(args), "max_evals": args.slots, "quiet": True})
    pool_search(data(min(args.n_train, 1000), 1), warm)  # both searches then find TensorFlow imported
    print(f"workers warmed up in {time.monotonic() - started:.0f} s")
    ratios: list[float] = []
    gaps: list[float] = []
    for repeat in range(args.repeats):  # alternate which goes first: the machine's speed drifts
        runs = {}
        for side in ("pool", "hopper") if repeat % 2 == 0 else ("hopper", "pool"):
            runs[side] = (pool_search if side == "pool" else hopper_search)(namespace, args)
        (pool, pool_figures), (hopper, hopper_figures) = runs["pool"], runs["hopper"]
        print(f"\n---- repeat {repeat + 1} of {args.repeats}")
        pool_best = describe("task parallelism (nbtune pool)", pool, pool_figures)
        hopper_best = describe("model hopper (--hopper)", hopper, hopper_figures)
        ratios.append(hopper.wall_time / pool.wall_time)
        gaps.append(pool_best - hopper_best)
        print(f"wall time, hopper / pool: {ratios[-1]:.2f}; best val_accuracy gap: {gaps[-1]:+.4f}")
    print(
        f"\ntraining data resident per worker, hopper / pool: "
        f"{hopper_figures['training'] / pool_figures['training']:.3f} (1/P = {1 / args.slots:.3f}); all resident "
        f"data: {hopper_figures['resident'] / pool_figures['resident']:.2f} (validation data goes to every worker)"
    )
    print(f"best val_accuracy gap (pool - hopper), median: {statistics.median(gaps):+.4f} (target <= 0.005)")
    print(
        f"wall time, hopper / pool, median of {len(ratios)}: {statistics.median(ratios):.2f} (target <= 1.15); "
        f"each: {', '.join(f'{r:.2f}' for r in ratios)}"
    )
    print(f"total {time.monotonic() - started:.0f} s; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
