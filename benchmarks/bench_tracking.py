"""What MLflow tracking costs a search: the same search with and without it, side by side in one process.

    .venv/bin/python benchmarks/bench_tracking.py            # 200 trials x 0.2 s, embedded sqlite (~6 min)
    .venv/bin/python benchmarks/bench_tracking.py --server   # also against a real `mlflow server` (~12 min)
    .venv/bin/python benchmarks/bench_tracking.py --backend spark --cell-logging   # the cell logs too (~6 min)

With --cell-logging every trial's cell also logs 20 metrics and a small artifact with MLflow's fluent
API; nbtune records them where the trial runs and its writer copies them into the trial's run. Tracking
"off" (--no-mlflow) still records them and drops them, so the ratio is the cost of writing them.

Wall time is the whole `nbtune.tune()` call: with tracking that includes waiting for the writer
thread at the end (the last runs, the summary and the artifacts). Runs alternate without / with
tracking; the first pair is "cold" (the process imports MLflow and creates a new mlflow.db, as a
user's first search in a kernel does), then `--repeat` warm pairs. Target: tracking adds at most 3%
of wall time. Machines here are shared and noisy: single runs swing by 10%; look at the median of
the pair ratios and at fastest vs fastest.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbtune

CELL = """import time
x = 0.5  # tune: uniform(0, 1)
k = 1    # tune: choice(1, 2, 3)
time.sleep(nap)
loss = (x - 0.3) ** 2 + k
"""


LOGGING_CELL = """import time
import mlflow
x = 0.5  # tune: uniform(0, 1)
k = 1    # tune: choice(1, 2, 3)
time.sleep(nap)
loss = (x - 0.3) ** 2 + k
mlflow.log_metrics({f"m{i}": loss * i for i in range(20)})
mlflow.log_text(f"x={x} k={k} loss={loss}", "summary.txt")
"""


@dataclass(frozen=True)
class Setup:
    backend: str
    cell: str


def one(setup: Setup, trials: int, nap: float, seed: int, tracking_uri: str | None) -> tuple[float, float]:
    """(whole call, search loop only) in seconds."""
    options = {"mlflow": False} if tracking_uri is None else {"tracking_uri": tracking_uri, "experiment": "bench"}
    start = time.perf_counter()
    result = nbtune.tune(
        setup.cell, {"nap": nap}, max_evals=trials, seed=seed, backend=setup.backend, quiet=True, **options
    )
    wall = time.perf_counter() - start
    assert len(result.records) == trials
    if tracking_uri is not None:
        assert result.parent_run_id and all(r.mlflow_run_id for r in result.records), "tracking lost runs"
        if setup.cell is LOGGING_CELL:  # what the cell logged is in its trial's run
            from mlflow.tracking import MlflowClient  # here: the first pair is the one that imports MLflow

            client = MlflowClient(tracking_uri)
            run_id = result.records[-1].mlflow_run_id
            assert "m19" in client.get_run(run_id).data.metrics, "the cell's metrics are missing"
            assert [a.path for a in client.list_artifacts(run_id)] == ["summary.txt"], "the cell's artifact is missing"
    return wall, result.wall_time


def compare(setup: Setup, label: str, uri: str, trials: int, nap: float, repeat: int) -> float:
    """Alternate runs without and with tracking; the first pair is the cold one (MLflow not yet imported)."""
    ratios: list[float] = []
    offs: list[float] = []
    ons: list[float] = []
    for i in range(repeat + 1):  # alternating, so drifting machine load hits both sides alike
        off, _ = one(setup, trials, nap, i, None)
        on, loop = one(setup, trials, nap, i, uri)
        kind = "cold" if i == 0 else f"warm {i}"
        change = on / off - 1
        print(f"  {label} {kind:7s}: without {off:6.2f} s, with {on:6.2f} s (search loop {loop:.2f} s): {change:+.1%}")
        if i:
            ratios.append(on / off)
            offs.append(off)
            ons.append(on)
    median = statistics.median(ratios) - 1
    best = min(ons) / min(offs) - 1
    print(f"{label}: warm overhead median of pairs {median:+.1%}, fastest vs fastest {best:+.1%}", flush=True)
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--nap", type=float, default=0.2, help="seconds each trial sleeps")
    parser.add_argument("--repeat", type=int, default=3, help="warm pairs after the cold one")
    parser.add_argument("--server", action="store_true", help="also log to a real `mlflow server` on 127.0.0.1")
    parser.add_argument("--backend", choices=["local", "spark"], default="local")
    parser.add_argument("--cell-logging", action="store_true", help="the cell logs 20 metrics and an artifact")
    args = parser.parse_args()
    setup = Setup(args.backend, LOGGING_CELL if args.cell_logging else CELL)
    ideal = args.trials * args.nap
    what = "cell logs 20 metrics + 1 artifact" if args.cell_logging else "plain cell"
    print(f"{args.trials} trials x {args.nap} s (sleep total {ideal:.0f} s), {args.backend} backend, {what}")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # artifacts of the embedded store go to ./mlruns
        results = {"sqlite": compare(setup, "sqlite", f"sqlite:///{tmp}/mlflow.db", args.trials, args.nap, args.repeat)}
        if args.server:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from test_tracking import start_mlflow_server

            server = start_mlflow_server(Path(tmp) / "server")
            try:
                results["server"] = compare(setup, "mlflow server", server.url, args.trials, args.nap, args.repeat)
            finally:
                server.stop()
        from nbtune.tracking._tracker import wait_for_background

        wait_for_background(60)  # the last search's summary files, still being written, go in `tmp`
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    worst = max(results.values())
    print(f"worst warm overhead (median of pairs) {worst:+.1%}, target <= +3%: {'ok' if worst <= 0.03 else 'over'}")


if __name__ == "__main__":
    main()
