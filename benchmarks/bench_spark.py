"""nbtune's warm Spark pool vs hyperopt's SparkTrials vs serial Trials, side by side on one Spark session.

    .venv/bin/python benchmarks/bench_spark.py            # all workloads (about 20 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_spark.py --only a b # some of them
    .venv/bin/python benchmarks/bench_spark.py --repeat 1 # one run each instead of the median of 3
    .venv/bin/python benchmarks/bench_spark.py --only f   # issue 19: 10,000 x 0.1 s TPE (about 20 minutes)
    .venv/bin/python benchmarks/bench_spark.py --only f --scale-trials 300   # the same, small (a check)
    .venv/bin/python benchmarks/bench_spark.py --only g   # issue 19: 16 x 0.5 s with and without 188 MB captured
    .venv/bin/python benchmarks/bench_spark.py --only r   # issue 19: (f) without tracking beside Ray Tune
    .venv/bin/python benchmarks/bench_spark.py --only h --pause-minutes 5  # two TensorFlow searches 5 min apart

Prints wall time, slot efficiency (busy slot-seconds / (P x wall)) and nbtune's wall as a
fraction of SparkTrials'. Machines here are shared and noisy: compare ratios, not seconds.

(f) is nbtune alone (SparkTrials would take hours): a TPE search of --scale-trials trials x 0.1 s,
tracking off then on (an embedded sqlite store), with slot efficiency, the driver process's CPU per
trial (every thread: loop, suggestions, channel, MLflow writer) over the 100 trials before 10%, 30%
and 100% of the search (1k, 3k and 10k at full size), and the driver's memory at the end.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cloudpickle
import numpy as np
from hyperopt import STATUS_OK, Trials, fmin, hp, rand
from hyperopt.spark import SparkTrials

import nbtune
from nbtune.spark._session import start_local_session
from nbtune.trial._records import TrialRequest

P = 2


@dataclass
class Workload:
    key: str
    title: str
    trials: int
    nap: float
    big_mb: int = 0
    tensorflow: bool = False
    sparktrials_trials: int | None = None  # SparkTrials on fewer trials where it would take too long


WORKLOADS = [
    Workload("a", "16 trials x 0.5 s", 16, 0.5),
    Workload("b", "12 trials x 2 s", 12, 2.0),
    Workload("c", "16 x 0.5 s, 188 MB array captured", 16, 0.5, big_mb=188),
    Workload("d", "8 trials importing TensorFlow + tiny fit", 8, 0.0, tensorflow=True),
    Workload("e", "1,000 trials x 0.1 s", 1000, 0.1, sparktrials_trials=100),
]

TF_BODY = """
t0 = time.perf_counter()
import tensorflow as tf
import_seconds = time.perf_counter() - t0
model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(4), tf.keras.layers.Dense(1)])
model.compile(optimizer=tf.keras.optimizers.Adam(x), loss="mse")
model.fit(np.ones((64, 4)), np.ones(64), epochs=2, verbose=0)
"""


def cell_for(w: Workload) -> str:
    body = "import time\nimport numpy as np\nx = 0.01  # tune: uniform(0.001, 0.1)\nt_start = time.perf_counter()\n"
    body += "size = big.shape[0]\n" if w.big_mb else ""
    body += TF_BODY if w.tensorflow else f"time.sleep({w.nap})\n"
    body += "busy = time.perf_counter() - t_start\nloss = x\n"
    return body


def objective_for(w: Workload, big: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def fn(params: dict[str, Any]) -> dict[str, Any]:
        import time

        import numpy as np

        x = params["x"]
        t_start = time.perf_counter()
        imported = 0.0
        if big is not None:
            _ = big.shape[0]
        if w.tensorflow:
            t0 = time.perf_counter()
            import tensorflow as tf

            imported = time.perf_counter() - t0
            model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(4), tf.keras.layers.Dense(1)])
            model.compile(optimizer=tf.keras.optimizers.Adam(x), loss="mse")
            model.fit(np.ones((64, 4)), np.ones(64), epochs=2, verbose=0)
        else:
            time.sleep(w.nap)
        return {"status": STATUS_OK, "loss": x, "busy": time.perf_counter() - t_start, "imported": imported}

    return fn


def run_nbtune(spark: Any, w: Workload, big: Any) -> dict[str, float]:
    ns = {"spark": spark, **({"big": big} if big is not None else {})}
    log = ("busy", "import_seconds") if w.tensorflow else ("busy",)
    start = time.perf_counter()
    result = nbtune.tune(
        cell_for(w),
        ns,
        backend="spark",
        parallelism=P,
        max_evals=w.trials,
        algo="random",
        quiet=True,
        mlflow=False,
        log_metrics=log,
    )
    wall = time.perf_counter() - start
    busy = sum(r.log_metrics["busy"] for r in result.records)
    imports = sum(1 for r in result.records if r.log_metrics.get("import_seconds", 0) > 1.0)
    return {"wall": wall, "busy": busy, "n": len(result.records), "slow_imports": imports}


def run_hyperopt(w: Workload, trials: Trials, n: int, big: Any) -> dict[str, float]:
    space = {"x": hp.uniform("x", 0.001, 0.1)}
    start = time.perf_counter()
    fmin(objective_for(w, big), space, algo=rand.suggest, max_evals=n, trials=trials, show_progressbar=False)
    wall = time.perf_counter() - start
    results = [t["result"] for t in trials.trials if t["result"].get("status") == STATUS_OK]
    busy = sum(r["busy"] for r in results)
    imports = sum(1 for r in results if r.get("imported", 0) > 1.0)
    return {"wall": wall, "busy": busy, "n": len(results), "slow_imports": imports}


SCALE_CELL = """import time
lr = 0.01  # tune: loguniform(1e-4, 1e-1)
width = 64  # tune: choice([16, 32, 64, 128])
dropout = 0.2  # tune: uniform(0, 0.5)
t_start = time.perf_counter()
time.sleep(nap)
busy = time.perf_counter() - t_start
loss = (dropout - 0.1) ** 2 + width / 1000 + lr
"""


class CpuMarks(nbtune.Listener):
    """The driver process's CPU time (every thread) when the search reaches some numbers of finished trials."""

    def __init__(self, marks: list[int]) -> None:
        self.wanted = set(marks)
        self.cpu: dict[int, float] = {}
        self.finished = 0

    def trial_finished(self, record: Any) -> None:
        self.finished += 1
        if self.finished in self.wanted:
            self.cpu[self.finished] = time.process_time()


def rss_mb() -> tuple[float, float]:
    """The driver's resident memory now and at its peak, in MB."""
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    return now, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def run_scale(spark: Any, trials: int, nap: float, tracking_uri: str | None) -> dict[str, Any]:
    """One TPE search of `trials` x `nap` s on the pool; efficiency, CPU per trial at 10/30/100%, memory."""
    ends = sorted({max(100, round(trials * f)) for f in (0.1, 0.3, 1.0)} & set(range(100, trials + 1)))
    marks = CpuMarks([m for end in ends for m in (end - 99, end)])
    options = {"mlflow": False} if tracking_uri is None else {"tracking_uri": tracking_uri, "experiment": "bench"}
    start = time.perf_counter()
    result = nbtune.tune(
        SCALE_CELL,
        {"spark": spark, "nap": nap},
        listeners=[marks],
        backend="spark",
        parallelism=P,
        max_evals=trials,
        algo="tpe",
        seed=0,
        quiet=True,
        log_metrics=("busy",),
        **options,
    )
    wall = time.perf_counter() - start
    assert len(result.records) == trials and result.counts()["ok"] == trials, result.summary()
    if tracking_uri is not None:
        assert all(r.mlflow_run_id for r in result.records), "tracking lost runs"
    busy = sum(r.log_metrics["busy"] for r in result.records)
    per_trial = {end: (marks.cpu[end] - marks.cpu[end - 99]) / 99 for end in ends}
    loop = {"wall": result.wall_time, "busy": busy}  # the search loop alone: no set-up, no writer's last runs
    return {"wall": wall, "busy": busy, "n": trials, "cpu": per_trial, "rss": rss_mb(), "loop_eff": efficiency(loop, P)}


def scale(spark: Any, trials: int, nap: float) -> None:
    print(f"\n(f) {trials:,} trials x {nap} s, TPE, nbtune pool (P={P})", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = f"sqlite:///{tmp}/mlflow.db"
        run_scale(spark, 100, 0.01, store)  # MLflow imported and its store created before the measured run
        for label, uri in (("tracking off", None), ("tracking on (sqlite)", store)):
            m = run_scale(spark, trials, nap, uri)
            cpu = ", ".join(f"{end:,}: {v * 1000:.1f} ms" for end, v in m["cpu"].items())
            print(
                f"  {label}: wall {m['wall']:.1f} s, efficiency {efficiency(m, P):.3f} (search loop alone "
                f"{m['loop_eff']:.3f}), driver CPU per trial at {cpu}; "
                f"driver memory {m['rss'][0]:.0f} MB (peak {m['rss'][1]:.0f} MB)",
                flush=True,
            )
            rows.append((label, m))
    print("\n| tracking | wall | slot efficiency (loop alone) | driver CPU per trial | driver RSS at the end (peak) |")
    print("|---|---|---|---|---|")
    for label, m in rows:
        cpu = ", ".join(f"{v * 1000:.1f} ms at {end:,}" for end, v in m["cpu"].items())
        rss = f"{m['rss'][0]:.0f} ({m['rss'][1]:.0f}) MB"
        print(f"| {label} | {m['wall']:.1f} s | {efficiency(m, P):.3f} ({m['loop_eff']:.3f}) | {cpu} | {rss} |")


def run_ray(trials: int, nap: float, budget: float) -> dict[str, Any]:
    """Ray Tune with reuse_actors on P CPUs: the same TPE search (HyperOptSearch) as (f), within `budget` seconds."""
    import ray
    from hyperopt import hp as hyperopt_hp
    from ray import tune
    from ray.tune.search.hyperopt import HyperOptSearch

    def trainable(config: dict[str, Any]) -> None:
        t_start = time.perf_counter()
        time.sleep(nap)
        loss = (config["dropout"] - 0.1) ** 2 + config["width"] / 1000 + config["lr"]
        tune.report({"loss": loss, "busy": time.perf_counter() - t_start})

    space = {
        "lr": hyperopt_hp.loguniform("lr", np.log(1e-4), np.log(1e-1)),
        "width": hyperopt_hp.choice("width", [16, 32, 64, 128]),
        "dropout": hyperopt_hp.uniform("dropout", 0, 0.5),
    }
    busy: list[float] = []

    class Collect(tune.Callback):  # type: ignore[misc]
        """Results as they arrive (with the per-trial logger files off, the result grid has none to read)."""

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any], **info: Any) -> None:
            busy.append(float(result.get("busy", 0.0)))

    ray.init(num_cpus=P, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 1}),
                tune_config=tune.TuneConfig(
                    search_alg=HyperOptSearch(space, metric="loss", mode="min", random_state_seed=0),
                    num_samples=trials,
                    max_concurrent_trials=P,
                    reuse_actors=True,
                    time_budget_s=budget,
                ),
                run_config=tune.RunConfig(storage_path=tmp, verbose=0, callbacks=[Collect()]),
            )
            start = time.perf_counter()
            tuner.fit()
            wall = time.perf_counter() - start
    finally:
        ray.shutdown()
    return {"wall": wall, "busy": float(sum(busy)), "n": len(busy)}


def ray_side_by_side(spark: Any, trials: int, nap: float, budget: float) -> None:
    """(r) Ray Tune (reuse_actors, HyperOptSearch) beside nbtune's pool: the same TPE search, tracking off."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard files per trial
    print(f"\n(r) {trials:,} trials x {nap} s, TPE, tracking off: nbtune pool vs Ray Tune (P={P})", flush=True)
    ours = run_scale(spark, trials, nap, None)
    print(f"  nbtune pool: {ours['n']:,} trials in {ours['wall']:.1f} s, efficiency {efficiency(ours, P):.3f}")
    theirs = run_ray(trials, nap, budget)
    print(
        f"  Ray Tune:    {theirs['n']:,} trials in {theirs['wall']:.1f} s (budget {budget:g} s), "
        f"efficiency {efficiency(theirs, P):.3f}",
        flush=True,
    )
    rate = (ours["n"] / ours["wall"]) / (theirs["n"] / theirs["wall"])
    print(f"  trials per second, nbtune / Ray Tune: {rate:.2f}x", flush=True)


def payload(spark: Any, repeat: int, gap: float) -> None:
    """(g) 16 x 0.5 s with and without a 188 MB array captured, interleaved: what the array costs the pool.

    Each search starts `gap` seconds after the previous one ends, as a notebook's next cell does: with
    no gap, the new search's tasks wait up to ~0.1 s for the last search's tasks to hand their cores back.
    """
    print(f"\n(g) 16 x 0.5 s, no data vs 188 MB array captured, nbtune pool, {gap:g} s between searches", flush=True)
    big = np.random.default_rng(0).random(188_000_000 // 8)
    plain, heavy = WORKLOADS[0], WORKLOADS[2]
    runs: dict[str, list[dict[str, float]]] = {"no data": [], "188 MB": []}
    for _ in range(max(1, repeat)):
        time.sleep(gap)
        runs["no data"].append(run_nbtune(spark, plain, None))
        time.sleep(gap)
        runs["188 MB"].append(run_nbtune(spark, heavy, big))
    for label, ms in runs.items():
        m = median_run(ms)
        print(f"  {label}: wall {m['wall']:.2f} s, efficiency {efficiency(m, P):.3f}{spread(m)}", flush=True)


def pause(spark: Any, minutes: float) -> None:
    """(h) Two searches of 8 TensorFlow-importing trials `minutes` apart: does the second import TensorFlow?"""
    from nbtune.spark._keepwarm import keeper_of

    print(f"\n(h) 8 TensorFlow trials, a pause of {minutes:g} min, 8 more (keep_warm on, its default)", flush=True)
    tf = WORKLOADS[3]
    first = run_nbtune(spark, tf, None)
    print(f"  first search: wall {first['wall']:.1f} s, {first['slow_imports']} of 8 trials imported TensorFlow")
    keeper = keeper_of(spark)
    before = len(keeper.rounds)
    time.sleep(minutes * 60)
    rounds = list(keeper.rounds)[before:]
    second = run_nbtune(spark, tf, None)
    print(f"  second search: wall {second['wall']:.1f} s, {second['slow_imports']} of 8 trials imported TensorFlow")
    if rounds:
        seconds = sorted(r.seconds for r in rounds)
        print(
            f"  keep-alive during the pause: {len(rounds)} rounds of {len(rounds[0].pids)} tasks, "
            f"job wall median {seconds[len(seconds) // 2] * 1000:.0f} ms (max {seconds[-1] * 1000:.0f} ms)",
            flush=True,
        )


def efficiency(m: dict[str, Any], slots: int) -> float:
    return m["busy"] / (slots * m["wall"])


def median_run(runs: list[dict[str, float]]) -> dict[str, Any]:
    """The run with the median wall time (its own busy time and counts, so its efficiency is consistent)."""
    ordered = sorted(runs, key=lambda m: m["wall"])
    return {**ordered[len(ordered) // 2], "walls": [m["wall"] for m in runs]}


def walls(runs: list[dict[str, float]]) -> str:
    return ", ".join(f"{m['wall']:.1f}" for m in runs)


def spread(m: dict[str, Any]) -> str:
    walls = m.get("walls", [m["wall"]])
    return "" if len(walls) < 2 else f" (median of {len(walls)}: {', '.join(f'{w:.2f}' for w in walls)} s)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=[w.key for w in WORKLOADS], help="a-e, and f (not by default)")
    parser.add_argument("--scale-trials", type=int, default=10_000, help="(f): how many 0.1 s TPE trials")
    parser.add_argument("--pause-minutes", type=float, default=5.0, help="(h): minutes between the two searches")
    parser.add_argument("--ray-budget", type=float, default=1800.0, help="(r): seconds Ray Tune may take")
    parser.add_argument("--gap", type=float, default=2.0, help="(g): seconds between searches (0: back to back)")
    parser.add_argument("--no-serial", action="store_true", help="skip serial Trials (slow on e)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of nbtune and SparkTrials per workload (not e)")
    args = parser.parse_args()
    os.environ["NBTUNE_SPARK_MASTER"] = f"local[{P}]"
    spark = start_local_session()
    print(f"python {sys.version.split()[0]}, pyspark {spark.version}, master {spark.conf.get('spark.master')}, P={P}")
    # Warm both paths once so neither pays the session's first-job costs in a measured run.
    run_nbtune(spark, Workload("w", "warm-up", 2, 0.01), None)
    run_hyperopt(Workload("w", "warm-up", 2, 0.01), SparkTrials(parallelism=P, spark_session=spark), 2, None)

    if "f" in args.only:
        scale(spark, args.scale_trials, 0.1)
    if "r" in args.only:
        ray_side_by_side(spark, args.scale_trials, 0.1, args.ray_budget)
    if "g" in args.only:
        payload(spark, args.repeat, args.gap)
    if "h" in args.only:
        pause(spark, args.pause_minutes)
    rows = []
    for w in WORKLOADS:
        if w.key not in args.only:
            continue
        big = np.random.default_rng(0).random(w.big_mb * 1_000_000 // 8) if w.big_mb else None
        print(f"\n({w.key}) {w.title}", flush=True)
        repeat = 1 if w.key == "e" else max(1, args.repeat)
        n_st = w.sparktrials_trials or w.trials
        ours_runs, theirs_runs = [], []
        for _ in range(repeat):  # interleaved, so a noisy spell hits both
            ours_runs.append(run_nbtune(spark, w, big))
            theirs_runs.append(run_hyperopt(w, SparkTrials(parallelism=P, spark_session=spark), n_st, big))
        ours, theirs = median_run(ours_runs), median_run(theirs_runs)
        if w.tensorflow:  # the first search is the one that imports TensorFlow; later ones find it loaded
            ours, theirs = {**ours_runs[0], "walls": [ours_runs[0]["wall"]]}, theirs_runs[0]
        print(
            f"  nbtune pool:  wall {ours['wall']:.2f} s, efficiency {efficiency(ours, P):.3f}{spread(ours)}", flush=True
        )
        print(
            f"  SparkTrials:  wall {theirs['wall']:.1f} s on {n_st} trials, efficiency {efficiency(theirs, P):.2f}"
            f"{spread(theirs)}",
            flush=True,
        )
        serial = None
        if not args.no_serial:
            n_se = min(w.trials, 200)
            serial = run_hyperopt(w, Trials(), n_se, big)
            print(f"  serial Trials: wall {serial['wall']:.1f} s on {n_se} trials", flush=True)
        per_trial_ours, per_trial_theirs = ours["wall"] / ours["n"], theirs["wall"] / max(1, theirs["n"])
        row = {
            "workload": f"({w.key}) {w.title}",
            "nbtune wall": ours["wall"],
            "nbtune eff": efficiency(ours, P),
            "SparkTrials wall": theirs["wall"] * (w.trials / n_st),
            "SparkTrials eff": efficiency(theirs, P),
            "serial wall": serial["wall"] * (w.trials / min(w.trials, 200)) if serial else float("nan"),
            "ratio": per_trial_ours / per_trial_theirs,
            "note": "",
        }
        if w.big_mb:
            request = len(pickle.dumps(TrialRequest(tid=0, params={"x": 0.05})))
            shipped = len(cloudpickle.dumps(objective_for(w, big)))
            row["note"] = (
                f"per-trial message {request} B; the array ({shipped / 1e6:.0f} MB) goes once per worker "
                f"(SparkTrials pickles it for every trial)"
            )
        if w.tensorflow:
            row["note"] = (
                f"first search, trials paying a >1 s TF import: nbtune {ours['slow_imports']} of {ours['n']}, "
                f"SparkTrials {theirs['slow_imports']} of {theirs['n']}"
            )
            if len(ours_runs) > 1:
                ours_later, theirs_later = ours_runs[1:], theirs_runs[1:]
                row["note"] += (
                    f"; later searches in the same session: nbtune {walls(ours_later)} s with "
                    f"{sum(m['slow_imports'] for m in ours_later)} slow imports (Spark reused its Python workers), "
                    f"SparkTrials {walls(theirs_later)} s with {sum(m['slow_imports'] for m in theirs_later)}"
                )
        if w.sparktrials_trials:
            row["note"] = f"SparkTrials run on {n_st} trials and scaled to {w.trials}"
        rows.append(row)

    if not rows:
        spark.stop()
        return
    header = ["workload", "nbtune wall", "nbtune eff", "SparkTrials wall", "SparkTrials eff", "serial wall"]
    print("\n| " + " | ".join([*header, "nbtune/SparkTrials"]) + " |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['nbtune wall']:.2f} s | {r['nbtune eff']:.3f} | {r['SparkTrials wall']:.1f} s | "
            f"{r['SparkTrials eff']:.2f} | {r['serial wall']:.1f} s | {r['ratio']:.2f}x |"
        )
    for r in rows:
        if r["note"]:
            print(f"- {r['workload']}: {r['note']}")
    spark.stop()


if __name__ == "__main__":
    main()
