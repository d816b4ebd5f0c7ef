"""One model per group: nbtune `--by` against the hand-written pattern and a serial loop on the driver.

G groups x T trials of a small scikit-learn fit (`--model ridge`, about 1 ms here, or `boosting`, about
10 ms; the script prints the measured median), local[2], one process, one Spark session:

- nbtune: `%%tune --by g --data sales --max-evals T` (nbtune.tune with by/data);
- hand-written: `df.groupBy("g").applyInPandas(fn)`, `fn` running hyperopt's `fmin` with serial `Trials`
  (the pattern users write today);
- serial: a pandas `groupby` loop on the driver running the same `fmin` per group.

MLflow is off unless `--mlflow`: then both track into one SQLite store, nbtune as it does (a parent run,
a child run per group with its trials table), the hand-written pattern from the workers (a run per group
with its best parameter and metric, Databricks' published pattern). Slot efficiency = time spent
searching inside the groups / (wall x slots). Walls are medians of --repeats.

    .venv/bin/python benchmarks/bench_groups.py                        # 1,000 groups x 20 trials
    .venv/bin/python benchmarks/bench_groups.py --groups 40 --trials 5 --repeats 1
    .venv/bin/python benchmarks/bench_groups.py --model boosting --mlflow --repeats 1   # the issue's case
    .venv/bin/python benchmarks/bench_groups.py --memory-mb 500 --trials 5   # the driver's memory only
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np
import pandas as pd

CELL = """
alpha = 1.0  # tune: loguniform(1e-3, 10)
model = make_model(KIND, alpha).fit(sales[FEATURES].to_numpy()[:HALF], sales["y"].to_numpy()[:HALF])
pred = model.predict(sales[FEATURES].to_numpy()[HALF:])
rmse = float(np.sqrt(np.mean((pred - sales["y"].to_numpy()[HALF:]) ** 2)))
"""
FEATURES = [f"f{i}" for i in range(20)]


def make_model(kind: str, alpha: float) -> Any:
    """The model a trial fits: a Ridge (about 1 ms here) or small gradient boosting (about 10 ms, the issue's fit)."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import Ridge

    if kind == "ridge":
        return Ridge(alpha=alpha)
    return GradientBoostingRegressor(n_estimators=10, max_depth=2, learning_rate=min(alpha, 1.0), random_state=0)


def make_data(groups: int, rows: int, seed: int = 0) -> pd.DataFrame:
    """`groups` linear problems of `rows` rows and 20 features each."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(groups * rows, len(FEATURES)))
    w = rng.normal(size=(groups, len(FEATURES)))
    g = np.repeat(np.arange(groups), rows)
    y = np.einsum("ij,ij->i", x, w[g]) + rng.normal(0, 0.5, groups * rows)
    frame = pd.DataFrame(x, columns=FEATURES)
    frame["g"], frame["y"] = g, y
    return frame


def fit_seconds(data: pd.DataFrame, rows: int, kind: str) -> float:
    """The median time of one trial's fit and score."""
    one = data[data["g"] == 0]
    times = []
    for _ in range(20):
        start = time.perf_counter()
        exec(
            CELL,
            {"make_model": make_model, "KIND": kind, "np": np, "sales": one, "FEATURES": FEATURES, "HALF": rows // 2},
        )
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def fmin_group(pdf: pd.DataFrame, trials: int, half: int, kind: str) -> float:
    """The hand-written search of one group: hyperopt's fmin over serial Trials; returns the best rmse."""
    from hyperopt import STATUS_OK, Trials, fmin, hp, tpe

    def objective(alpha: float) -> dict[str, Any]:  # the cell's very code
        model = make_model(kind, alpha).fit(pdf[FEATURES].to_numpy()[:half], pdf["y"].to_numpy()[:half])
        pred = model.predict(pdf[FEATURES].to_numpy()[half:])
        return {"loss": float(np.sqrt(np.mean((pred - pdf["y"].to_numpy()[half:]) ** 2))), "status": STATUS_OK}

    found = Trials()
    space = hp.loguniform("alpha", np.log(1e-3), np.log(10))
    fmin(objective, space, algo=tpe.suggest, max_evals=trials, trials=found, show_progressbar=False)
    return float(min(found.losses()))


def run_nbtune(
    spark: Any, sdf: Any, trials: int, half: int, kind: str = "ridge", uri: str | None = None
) -> tuple[float, float]:
    """Wall seconds and seconds searched inside the groups."""
    import nbtune

    ns = {"spark": spark, "sales": sdf, "make_model": make_model, "KIND": kind, "np": np, "FEATURES": FEATURES}
    ns["HALF"] = half
    track = {"mlflow": True, "tracking_uri": uri, "experiment": "nbtune"} if uri else {"mlflow": False}
    start = time.perf_counter()
    result = nbtune.tune(CELL, ns, by="g", data="sales", metric="rmse", max_evals=trials, quiet=True, **track)
    wall = time.perf_counter() - start
    assert result.group_counts().get("ok") == len(result.outcomes), result.summary()
    return wall, float(result.groups["duration"].sum())


def run_hand_written(sdf: Any, trials: int, half: int, kind: str, uri: str | None = None) -> tuple[float, float]:
    """The pattern users write today: applyInPandas around fmin, MLflow (with `uri`) logged from the workers."""

    def per_group(pdf: pd.DataFrame) -> pd.DataFrame:
        start = time.time()
        group = int(pdf["g"].iloc[0])
        if uri is None:
            best = fmin_group(pdf, trials, half, kind)
        else:
            import mlflow

            mlflow.set_tracking_uri(uri)
            mlflow.set_experiment("hand-written")
            with mlflow.start_run(run_name=f"g={group}"):
                best = fmin_group(pdf, trials, half, kind)
                mlflow.log_params({"g": group, "trials": trials})
                mlflow.log_metric("rmse", best)
        return pd.DataFrame({"g": [group], "best": [best], "seconds": [time.time() - start]})

    start = time.perf_counter()
    rows = sdf.groupBy("g").applyInPandas(per_group, "g long, best double, seconds double").collect()
    return time.perf_counter() - start, float(sum(r["seconds"] for r in rows))


def run_serial(data: pd.DataFrame, trials: int, half: int, kind: str) -> tuple[float, float]:
    """A pandas groupby loop on the driver."""
    start = time.perf_counter()
    for _, pdf in data.groupby("g"):
        fmin_group(pdf, trials, half, kind)
    wall = time.perf_counter() - start
    return wall, wall


def rss_mb() -> float:
    """This process's resident memory (the notebook's Python; the JVM is another process)."""
    with open("/proc/self/status") as status:
        kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return kb / 1024


def memory_check(spark: Any, mb: float, groups: int, trials: int) -> None:
    """A DataFrame of about `mb` MB generated in Spark (never on the driver); the driver's memory during --by."""
    import threading

    from pyspark.sql import functions as F

    rows = max(4, int(mb * 2**20 / (groups * (len(FEATURES) + 2) * 8)))  # a group's rows: 22 8-byte columns
    columns = [F.randn(seed=i).alias(name) for i, name in enumerate(FEATURES)]
    sdf = spark.range(groups * rows).select((F.col("id") % groups).alias("g"), *columns)
    sdf = sdf.withColumn("y", sum((F.col(name) for name in FEATURES), F.lit(0.0)) + F.randn(seed=99)).cache()
    sdf.count()
    run_nbtune(spark, sdf.filter(sdf["g"] < 4), 2, rows // 2)  # nbtune's own imports are not the data's cost
    before, peak, done = rss_mb(), [0.0], threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_mb())

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    wall, _ = run_nbtune(spark, sdf, trials, rows // 2)
    done.set()
    watcher.join()
    size = groups * rows * (len(FEATURES) + 2) * 8 / 2**20
    print(f"{groups} groups x {rows} rows x {len(FEATURES) + 2} columns = {size:.0f} MB, {trials} trials a group")
    print(
        f"driver RSS before {before:.0f} MB, peak during --by {peak[0]:.0f} MB (+{peak[0] - before:.0f} MB), "
        f"after {rss_mb():.0f} MB; wall {wall:.1f} s"
    )


def main() -> None:
    """Run the three side by side and print walls, slot efficiency and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--serial-groups", type=int, default=100, help="groups the serial loop runs (scaled up)")
    parser.add_argument("--model", choices=("ridge", "boosting"), default="ridge", help="what a trial fits")
    parser.add_argument("--mlflow", action="store_true", help="nbtune and the hand-written pattern track in MLflow")
    parser.add_argument("--memory-mb", type=float, default=None, help="only the driver-memory check on this size")
    args = parser.parse_args()

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ["NBTUNE_SPARK_MASTER"] = "local[2]"
    from nbtune.spark._session import start_local_session

    spark = start_local_session()
    slots = int(spark.sparkContext.defaultParallelism)
    if args.memory_mb is not None:
        print(f"load average before: {os.getloadavg()[0]:.2f}")
        memory_check(spark, args.memory_mb, args.groups, args.trials)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        spark.stop()
        return
    data = make_data(args.groups, args.rows)
    sdf = spark.createDataFrame(data).cache()
    sdf.count()
    half = args.rows // 2
    print(f"{args.groups} groups x {args.trials} trials, {args.rows} rows a group, local[{slots}]")
    fit_ms = fit_seconds(data, args.rows, args.model) * 1000
    print(f"one trial's fit ({args.model}): {fit_ms:.1f} ms (median of 20, driver)")
    print(f"load average before: {os.getloadavg()[0]:.2f}")

    uri = f"sqlite:///{tempfile.mkdtemp(prefix='bench_groups_')}/mlflow.db" if args.mlflow else None
    print(f"MLflow: {uri or 'off'}")
    if uri:  # made once here, so the workers' first set_experiment calls do not race to create it
        import mlflow

        mlflow.MlflowClient(uri).create_experiment("hand-written")
    warm = sdf.filter(sdf["g"] < 4)  # Python workers started and imports done before anything is timed
    run_nbtune(spark, warm, 2, half, args.model, uri)
    run_hand_written(warm, 2, half, args.model, uri)
    results: dict[str, list[tuple[float, float]]] = {"nbtune": [], "hand-written": [], "serial": []}
    serial_groups = min(args.serial_groups, args.groups)
    scale = args.groups / serial_groups
    small = data[data["g"] < serial_groups]
    for _ in range(args.repeats):  # interleaved, so a noisy neighbour hurts every contender alike
        results["nbtune"].append(run_nbtune(spark, sdf, args.trials, half, args.model, uri))
        results["hand-written"].append(run_hand_written(sdf, args.trials, half, args.model, uri))
        wall, busy = run_serial(small, args.trials, half, args.model)
        results["serial"].append((wall * scale, busy * scale))

    print(f"{'':14s} {'wall s':>8s} {'busy s':>8s} {'slot eff':>9s}")
    medians = {}
    for name, runs in results.items():
        wall = statistics.median(w for w, _ in runs)
        busy = statistics.median(b for _, b in runs)
        used = 1 if name == "serial" else slots
        medians[name] = wall
        note = f" (scaled from {serial_groups} groups)" if name == "serial" and scale != 1 else ""
        print(f"{name:14s} {wall:8.1f} {busy:8.1f} {busy / (wall * used):9.2f}{note}")
    print(f"wall nbtune / hand-written: {medians['nbtune'] / medians['hand-written']:.2f}")
    print(f"wall nbtune / serial:       {medians['nbtune'] / medians['serial']:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    spark.stop()


if __name__ == "__main__":
    main()
