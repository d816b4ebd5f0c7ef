"""The full Fashion-MNIST search: wall time, best test accuracy, and where a trial's time goes.

Runs the bundled template (32 trials, full data by default) on nbtune's Spark backend at the
machine's parallelism, with timers added around its steps and recorded as --log-metrics
(import, data load, model build, fit, test evaluation). With --sparktrials, the same search then
runs on hyperopt's SparkTrials in the same Spark session, capped at --sparktrials-cap times the
pool's wall time, and the two are compared.

With --compare-prune, the same search (same seed) runs without pruning and then with `--prune asha`,
and the two are compared: the wall time ratio and the best trial's test accuracy.

    NBTUNE_DATA_DIR=../shared/data/fashion-mnist .venv/bin/python benchmarks/bench_fashion_mnist.py
    .venv/bin/python benchmarks/bench_fashion_mnist.py --max-evals 8 --epochs 3 --sparktrials
    .venv/bin/python benchmarks/bench_fashion_mnist.py --compare-prune --quiet
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time

import nbtune

STEPS = ("t_import", "t_load", "t_build", "t_fit", "t_eval")
# (the line a timer goes in front of, the step that ends there)
_ANCHORS = (
    ("(x_train, y_train), (x_test, y_test) = fashion_mnist()", "t_import"),
    ("model = keras.Sequential(", "t_load"),
    ("stop = keras.callbacks.EarlyStopping", "t_build"),
    ("best = int(np.argmin", "t_fit"),
)


def timed_cell(n_train: int, epochs: int) -> str:
    """The template's body with its size lines set and a timer around each step."""
    body = nbtune.templates.get("fashion_mnist").split("\n", 1)[1]
    body = re.sub(r"^n_train = \d+", f"n_train = {n_train}", body, count=1, flags=re.M)
    body = re.sub(r"^epochs = \d+", f"epochs = {epochs}", body, count=1, flags=re.M)
    lines = ["import time as _time", "_t, _cpu = _time.perf_counter(), _time.process_time()"]
    for line in body.splitlines():
        for anchor, step in _ANCHORS:
            if line.startswith(anchor):
                lines.append(f"{step} = _time.perf_counter() - _t; _t = _time.perf_counter()")
        lines.append(line)
    lines.append("t_eval = _time.perf_counter() - _t")
    lines.append('epochs_run = len(history.history["val_loss"])')
    lines.append(
        "t_cpu = _time.process_time() - _cpu  # all threads of the worker: what the trial costs on a quiet CPU"
    )
    cell = "\n".join(lines) + "\n"
    missing = [step for _, step in _ANCHORS if f"{step} = " not in cell]
    if missing:
        raise SystemExit(f"the template changed: no anchor for {missing}")
    return cell


def run(
    backend: str, cell: str, args: argparse.Namespace, timeout: float | None = None, prune: str = "none"
) -> nbtune.TuneResult:
    """One search of the timed cell on `backend`."""
    return nbtune.tune(
        cell,
        {},
        max_evals=args.max_evals,
        backend=backend,
        metric="val_loss",
        log_metrics=("val_accuracy", "test_accuracy", *STEPS, "t_cpu", "epochs_run"),
        seed=args.seed,
        timeout=timeout,
        mlflow=not args.no_mlflow,
        quiet=args.quiet,
        prune=prune,
    )


def describe(name: str, result: nbtune.TuneResult) -> dict[str, float]:
    """Print one search's figures; return them for the comparison."""
    table = result.to_pandas()
    ok = table[table.status == "ok"]
    done = table[table.status.isin(["ok", "pruned"])]  # a pruned trial's val_loss is the best it reported
    best = done.loc[done.val_loss.idxmin()] if len(done) else None
    counts = ", ".join(f"{n} {status}" for status, n in table.status.value_counts().items())
    print(f"\n== {name}: {result.backend} x {result.parallelism}, {len(table)} trials ({counts})")
    print(f"wall time: {result.wall_time:.0f} s; sum of trial durations: {table.duration.sum():.0f} s")
    print(f"slot efficiency: {table.duration.sum() / (result.wall_time * result.parallelism):.2f}")
    if best is not None:
        print(
            f"best (by val_loss): test accuracy {best.test_accuracy:.4f}, val_loss {best.val_loss:.4f}, "
            f"filters {int(best.filters)}, dropout {best.dropout:.2f}, lr {best.learning_rate:.3g}"
        )
        print(f"highest test accuracy of any trial: {ok.test_accuracy.max():.4f}")
        print("median seconds per trial:", ", ".join(f"{s[2:]} {ok[s].median():.2f}" for s in STEPS))
        cold = ok[ok.t_import > 1.0]  # the first trial on each fresh worker imports TensorFlow
        print(f"trials that imported TensorFlow: {len(cold)} (median import {cold.t_import.median():.1f} s)")
        for filters, group in ok.groupby("filters"):
            print(
                f"  {int(filters):2d} filters {len(group):2d} trials: median fit {group.t_fit.median():6.1f} s, "
                f"CPU {group.t_cpu.median():6.1f} s, fit per epoch {(group.t_fit / group.epochs_run).median():5.1f} s, "
                f"epochs {group.epochs_run.median():4.1f}, test accuracy {group.test_accuracy.median():.4f}"
            )
        print(
            f"CPU seconds of all trials / {result.parallelism} slots: {ok.t_cpu.sum() / result.parallelism:.0f} s "
            "(about the search's wall time on an otherwise idle machine)"
        )
    return {"wall": result.wall_time, "best": float(best.test_accuracy) if best is not None else float("nan")}


def main() -> None:
    """Parse the arguments, run the search(es), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-evals", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--n-train", type=int, default=60000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sparktrials", action="store_true", help="also run the search with hyperopt's SparkTrials")
    parser.add_argument("--sparktrials-cap", type=float, default=2.0, help="SparkTrials time limit / pool wall time")
    parser.add_argument("--compare-prune", action="store_true", help="run without pruning, then with --prune asha")
    parser.add_argument("--no-mlflow", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="bench_fashion_"))  # MLflow's local store goes here, not in the project
    cell = timed_cell(args.n_train, args.epochs)
    print(
        f"Fashion-MNIST: {args.max_evals} trials, up to {args.epochs} epochs on {args.n_train} images, "
        f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}"
    )
    started = time.monotonic()
    if args.compare_prune:
        # Both searches on warm workers: a short search first imports TensorFlow on each of them.
        warm = argparse.Namespace(**{**vars(args), "max_evals": os.cpu_count() or 2, "no_mlflow": True, "quiet": True})
        run("spark", timed_cell(1000, 1), warm)
        print(f"workers warmed up in {time.monotonic() - started:.0f} s")
        plain = describe("no pruning", run("spark", cell, args))
        asha = describe("--prune asha", run("spark", cell, args, prune="asha"))
        print(
            f"\nASHA / no pruning wall time: {asha['wall'] / plain['wall']:.2f} (target <= 0.5); best test accuracy "
            f"{asha['best']:.4f} vs {plain['best']:.4f}, gap {plain['best'] - asha['best']:+.4f} (target <= 0.003)"
        )
        print(f"total {time.monotonic() - started:.0f} s; load average after: {os.getloadavg()[0]:.1f}")
        return
    pool = describe("nbtune Spark pool", run("spark", cell, args))
    if args.sparktrials:
        cap = args.sparktrials_cap * pool["wall"]
        other = describe("hyperopt SparkTrials", run("sparktrials", cell, args, timeout=cap))
        print(f"\nSparkTrials / pool wall time: {other['wall'] / pool['wall']:.2f} (capped at {cap:.0f} s)")
    print(f"\ntotal {time.monotonic() - started:.0f} s; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
