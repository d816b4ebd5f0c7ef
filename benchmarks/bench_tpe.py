"""TPE on a window of the history vs the whole history: search quality, cost per suggestion, driver CPU.

    .venv/bin/python benchmarks/bench_tpe.py                     # everything (a few minutes, driver CPU only)
    .venv/bin/python benchmarks/bench_tpe.py --only quality      # or: cost, driver
    .venv/bin/python benchmarks/bench_tpe.py --windows 25:100 50:200 --seeds 5 --trials 1000

quality: best value after --trials serial TPE trials on Branin (2-d, minimum 0.397887) and Hartmann-6
  (6-d, minimum -3.32237), median of --seeds seeds, for the whole history and each window best:recent
  (":raw" after it: TPE's own gamma on the window, instead of the one giving the whole history's good group).
cost: `tpe.suggest` CPU time per suggestion at 1k, 3k and 10k finished trials (3 parameters, as in issue 19).
driver: the search loop's CPU per trial (every driver thread) at those histories, with an executor that
  answers at once, so all that is measured is nbtune's own work and the algorithm's.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from nbtune._options import TuneOptions
from nbtune._result import TuneResult
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import SearchSpace, search_space
from nbtune.search import _history
from nbtune.search._build import build_objective
from nbtune.search._history import UNBOUNDED, History, Window, restore
from nbtune.search._loop import Search
from nbtune.trial._records import TrialOutcome, TrialRecord, TrialRequest

Fn = Callable[[dict[str, Any]], float]


def branin(p: dict[str, Any]) -> float:
    x1, x2 = p["x1"], p["x2"]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return float((x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10)


_HA = np.array(
    [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
)
_HP = 1e-4 * np.array(
    [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
     [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]
)  # fmt: skip
_HALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(p: dict[str, Any]) -> float:
    x = np.array([p[f"x{i}"] for i in range(1, 7)])
    return float(-np.sum(_HALPHA * np.exp(-np.sum(_HA * (x - _HP) ** 2, axis=1))))


FUNCTIONS: dict[str, tuple[str, Fn, float]] = {
    "Branin": ("x1 = 0.0  # tune: uniform(-5, 10)\nx2 = 0.0  # tune: uniform(0, 15)\n", branin, 0.397887),
    "Hartmann-6": ("".join(f"x{i} = 0.5  # tune: uniform(0, 1)\n" for i in range(1, 7)), hartmann6, -3.32237),
}
COST_CELL = (  # the 3-parameter space
    "lr = 0.01  # tune: loguniform(1e-4, 1e-1)\n"
    "width = 64  # tune: choice([16, 32, 64, 128])\n"
    "dropout = 0.2  # tune: uniform(0, 0.5)\n"
    "loss = lr\n"
)


def space_of(cell: str) -> SearchSpace:
    return search_space(parse_cell(cell).params, None, {})


def record(tid: int, number: int, vals: dict[str, list[Any]], params: dict[str, Any], value: float) -> TrialRecord:
    return TrialRecord(number=number, tid=tid, params=params, vals=vals, status="ok", value=value)


def serial_best(cell: str, fn: Fn, trials: int, seed: int, window: Window) -> float:
    """The best value of a serial TPE search (suggest, evaluate, learn; no lag), on a window or not."""
    space = space_of(cell)
    history = History(TuneResult("loss", "min", space.names).trials, space, "tpe", seed, window)
    best = math.inf
    for number in range(trials):
        suggested = history.suggest()
        assert suggested is not None
        tid, vals = suggested
        params = space.values(vals)
        value = fn(params)
        best = min(best, value)
        history.store(record(tid, number, vals, params, value), "loss", "min")
    return best


def quality(windows: list[Window], seeds: int, trials: int) -> None:
    print(f"\nquality: best value after {trials} serial TPE trials, median of {seeds} seeds (lower is better)")
    print("| function | window (best:recent) | median best | per seed | CPU s per search |")
    print("|---|---|---|---|---|")
    for name, (cell, fn, optimum) in FUNCTIONS.items():
        for window in [UNBOUNDED, *windows]:
            bests, cpu = [], []
            for seed in range(seeds):
                t0 = time.process_time()
                bests.append(serial_best(cell, fn, trials, seed, window))
                cpu.append(time.process_time() - t0)
            label = _label(window)
            each = ", ".join(f"{b:.5f}" for b in bests)
            print(
                f"| {name} (min {optimum}) | {label} | {statistics.median(bests):.5f} | {each} | "
                f"{statistics.median(cpu):.1f} |",
                flush=True,
            )


def random_history(n: int, seed: int = 0) -> tuple[SearchSpace, list[TrialRecord]]:
    """n finished trials of the cost space, from random search (their values: a smooth function of the params)."""
    space = space_of(COST_CELL)
    history = History(TuneResult("loss", "min", space.names).trials, space, "random", seed)
    records = []
    for number in range(n):
        suggested = history.suggest()
        assert suggested is not None
        tid, vals = suggested
        params = space.values(vals)
        value = (math.log10(params["lr"]) + 2.5) ** 2 + (params["dropout"] - 0.1) ** 2 + params["width"] / 1000
        rec = record(tid, number, vals, params, value)
        history.store(rec, "loss", "min")
        records.append(rec)
    return space, records


def resumed(space: SearchSpace, records: list[TrialRecord]) -> TuneResult:
    """A result holding these finished trials, as `--resume` rebuilds one."""
    result = TuneResult("loss", "min", space.names)
    result.records = [TrialRecord(**{**r.__dict__, "tid": -1}) for r in records]
    restore(result.trials, result.records, "loss", "min", [(None, None)] * len(records))
    return result


def cost(space: SearchSpace, records: list[TrialRecord], sizes: list[int], windows: list[Window], reps: int) -> None:
    print(f"\ncost: CPU of tpe.suggest per suggestion (median of {reps}), 3 parameters")
    print(
        "| history | "
        + " | ".join(f"window {_label(w)}" if w.best else _label(w) for w in [UNBOUNDED, *windows])
        + " |"
    )
    print("|---|" + "---|" * (1 + len(windows)))
    for n in sizes:
        cells = []
        for window in [UNBOUNDED, *windows]:
            history = History(resumed(space, records[:n]).trials, space, "tpe", 0, window)
            times = []
            for _ in range(reps):
                req = history.request()
                t0 = time.thread_time()  # CPU, not wall: the machines here are shared and noisy
                history.compute(req)
                times.append(time.thread_time() - t0)
                history.release([req.tid])
            cells.append(f"{statistics.median(times) * 1000:.1f} ms ({len(req.finished)} docs)")
        print(f"| {n:,} | " + " | ".join(cells) + " |", flush=True)


class InstantExecutor:
    """Answers each trial at once with a value from its parameters: only the driver's work is left."""

    name, slots = "instant", 2

    def __init__(self) -> None:
        self._queue: list[TrialRequest] = []

    def submit(self, request: TrialRequest) -> None:
        self._queue.append(request)

    def poll(self, timeout: float) -> list[TrialOutcome]:
        done, self._queue = self._queue, []
        return [TrialOutcome(tid=r.tid, status="ok", value=r.params["dropout"] + r.params["lr"]) for r in done]

    def cancel(self) -> None:
        self._queue.clear()

    def close(self) -> None:
        pass


def driver(space: SearchSpace, records: list[TrialRecord], sizes: list[int], extra: int) -> None:
    print(f"\ndriver: CPU of the search loop per trial (all threads), {extra} TPE trials after the history, 2 slots")
    print("| history | CPU per trial (default window) | CPU per trial (whole history) |")
    print("|---|---|---|")
    spec = parse_cell(COST_CELL)
    for n in sizes:
        cells = []
        for window in [None, UNBOUNDED]:
            opts = TuneOptions().replace(mlflow=False, backend="local", seed=0, quiet=True, max_evals=n + extra)
            search = Search(build_objective(spec, {}, opts, space.names), space, opts, InstantExecutor(), [], None,
                            resumed(space, records[:n]))  # fmt: skip
            if window is not None:
                search._history = History(search.result.trials, space, "tpe", 0, window)
            t0 = time.process_time()
            search.run()
            cells.append(f"{(time.process_time() - t0) / extra * 1000:.1f} ms")
        print(f"| {n:,} | " + " | ".join(cells) + " |", flush=True)


def _parse_window(text: str) -> Window:
    """best:recent, or best:recent:raw for TPE's own gamma on the window (no same good group)."""
    best, recent, *raw = text.split(":")
    return Window(int(best), int(recent), same_good=not raw)


def _label(w: Window) -> str:
    return "whole history" if w.best is None else f"{w.best}:{w.recent}{'' if w.same_good else ':raw'}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=["quality", "cost", "driver"])
    parser.add_argument("--windows", nargs="*", default=None, help="best:recent[:raw] (default: nbtune's)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 3000, 10000])
    args = parser.parse_args()
    default = _history.TPE_WINDOW
    windows = [_parse_window(w) for w in args.windows] if args.windows else [default]
    print(f"python {sys.version.split()[0]}, nbtune TPE window {default.best}:{default.recent}")
    if "quality" in args.only:
        quality(windows, args.seeds, args.trials)
    if {"cost", "driver"} & set(args.only):
        space, records = random_history(max(args.sizes))
        if "cost" in args.only:
            cost(space, records, args.sizes, windows, reps=10)
        if "driver" in args.only:
            driver(space, records, args.sizes, extra=200)


if __name__ == "__main__":
    main()
