"""What MLflow tracking costs a search: the same search with and without it, side by side in one process.

    .venv/bin/python benchmarks/bench_tracking.py                     # 200 trials x 0.2 s, embedded sqlite
    .venv/bin/python benchmarks/bench_tracking.py --repeat 3          # pairs alternate; medians compared
    .venv/bin/python benchmarks/bench_tracking.py --server            # also against a real `mlflow server`

Wall time is the whole `nbtune.tune()` call: with tracking that includes waiting for the writer
thread at the end (the last runs, the summary and the artifacts). The first tracked search of the
process also imports MLflow and creates a new mlflow.db, as a user's first search in a kernel does.
Target: tracking adds at most 3% of wall time. Machines here are shared and noisy: compare ratios.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nbtune

CELL = """import time
x = 0.5  # tune: uniform(0, 1)
k = 1    # tune: choice(1, 2, 3)
time.sleep(nap)
loss = (x - 0.3) ** 2 + k
"""


def one(trials: int, nap: float, seed: int, tracking_uri: str | None) -> tuple[float, float]:
    """(whole call, search loop only) in seconds."""
    options = {"mlflow": False} if tracking_uri is None else {"tracking_uri": tracking_uri, "experiment": "bench"}
    start = time.perf_counter()
    result = nbtune.tune(CELL, {"nap": nap}, max_evals=trials, seed=seed, backend="local", quiet=True, **options)
    wall = time.perf_counter() - start
    assert len(result.records) == trials
    if tracking_uri is not None:
        assert result.parent_run_id and all(r.mlflow_run_id for r in result.records), "tracking lost runs"
    return wall, result.wall_time


def compare(label: str, uri: str, trials: int, nap: float, repeat: int) -> float:
    off: list[float] = []
    on: list[float] = []
    for i in range(repeat):  # alternate, so drifting machine load hits both sides alike
        wall, _ = one(trials, nap, i, None)
        off.append(wall)
        print(f"  without tracking   run {i + 1}: {wall:7.2f} s", flush=True)
        wall, loop = one(trials, nap, i, uri)
        on.append(wall)
        print(f"  with {label:13s} run {i + 1}: {wall:7.2f} s  (search loop {loop:.2f} s)", flush=True)
    overhead = statistics.median(on) / statistics.median(off) - 1
    print(f"{label}: median {statistics.median(off):.2f} s -> {statistics.median(on):.2f} s, overhead {overhead:+.1%}")
    return overhead


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--nap", type=float, default=0.2, help="seconds each trial sleeps")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--server", action="store_true", help="also log to a real `mlflow server` on 127.0.0.1")
    args = parser.parse_args()
    ideal = args.trials * args.nap
    print(f"{args.trials} trials x {args.nap} s (sleep total {ideal:.0f} s), local backend, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # artifacts of the embedded store go to ./mlruns
        results = {"sqlite": compare("sqlite", f"sqlite:///{tmp}/mlflow.db", args.trials, args.nap, args.repeat)}
        if args.server:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from test_tracking import start_mlflow_server

            server = start_mlflow_server(Path(tmp) / "server")
            try:
                results["server"] = compare("mlflow server", server.url, args.trials, args.nap, args.repeat)
            finally:
                server.stop()
    worst = max(results.values())
    print(f"worst overhead {worst:+.1%} (target <= +3%): {'ok' if worst <= 0.03 else 'over target'}")


if __name__ == "__main__":
    main()
