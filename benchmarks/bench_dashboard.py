"""What the live dashboard costs a search of many fast trials: wall time and widget traffic.

Runs the same local search (trivial trials, random algorithm) quiet, with the text progress
line and with the widget dashboard (its widgets talk to a comm that counts messages and bytes,
as a front end would receive them), several times each, and prints median wall times as ratios
to the quiet search plus messages a second.

    .venv/bin/python benchmarks/bench_dashboard.py                 # 1000 trials x 3 repeats
    .venv/bin/python benchmarks/bench_dashboard.py --trials 300 --repeats 5
    .venv/bin/python benchmarks/bench_dashboard.py --trials 10000 --repeats 1   # issue 19's size
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import statistics
import sys
import time
from typing import Any

import comm

import nbtune
from nbtune.ui._dashboard import Dashboard
from nbtune.ui._progress import TextProgress

CELL = "x = 0.0  # tune: uniform(-5, 5)\ny = 1  # tune: choice(1, 2, 3)\nloss = (x - 1) ** 2 + y\n"


class CountingComm:
    """Counts what widgets send: messages and JSON plus binary bytes."""

    kernel = "counting"
    messages = 0
    size = 0

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = f"c{id(self)}"

    def on_msg(self, callback: Any) -> None:
        pass

    def send(self, data: Any = None, buffers: Any = None, **kwargs: Any) -> None:
        CountingComm.messages += 1
        CountingComm.size += len(json.dumps(data, default=str)) + sum(len(bytes(b)) for b in buffers or [])

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


last: dict[str, Any] = {}  # the last search's result, for to_pandas()


def run(display: str, trials: int) -> tuple[float, int, int]:
    listeners: list[Any] = []
    if display == "text":
        listeners = [TextProgress(stream=io.StringIO())]
    elif display == "dashboard":
        listeners = [Dashboard(show=lambda widget: None)]
    CountingComm.messages = CountingComm.size = 0
    start = time.perf_counter()
    options = {"max_evals": trials, "algo": "random", "backend": "local", "mlflow": False, "quiet": True}
    last["result"] = nbtune.tune(CELL, {}, listeners=listeners, **options)
    return time.perf_counter() - start, CountingComm.messages, CountingComm.size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    comm.create_comm = lambda **kwargs: CountingComm(**kwargs)
    run("dashboard", 20)  # imports and matplotlib's font cache, outside the timings
    walls: dict[str, list[float]] = {"quiet": [], "text": [], "dashboard": []}
    traffic: list[tuple[int, int]] = []
    for _ in range(args.repeats):
        for display in walls:  # interleaved, so a noisy neighbour hits all three alike
            wall, messages, size = run(display, args.trials)
            walls[display].append(wall)
            if display == "dashboard":
                traffic.append((messages, size))
    quiet = statistics.median(walls["quiet"])
    print(f"{args.trials} trials, median of {args.repeats} runs (python {sys.version.split()[0]})")
    for display, values in walls.items():
        wall = statistics.median(values)
        print(f"  {display:10s} wall {wall:6.2f} s  x{wall / quiet:.2f} of quiet")
    messages = statistics.median(m for m, _ in traffic)
    size = statistics.median(s for _, s in traffic)
    wall = statistics.median(walls["dashboard"])
    print(
        f"  dashboard traffic: {messages:.0f} messages ({messages / wall:.1f}/s, "
        f"{messages / args.trials:.2f} a trial), {size / 1e6:.2f} MB"
    )
    start = time.perf_counter()
    frame = last["result"].to_pandas()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  to_pandas(): {len(frame)} rows in {time.perf_counter() - start:.3f} s; peak memory {peak:.0f} MB")


if __name__ == "__main__":
    main()
