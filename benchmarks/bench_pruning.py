"""Pruning: nbtune's ASHA, Hyperband and median rule vs no pruning vs Optuna on Spark, side by side in one process.

    .venv/bin/python benchmarks/bench_pruning.py                   # everything (about 10 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_pruning.py --only crossing   # some parts: parallel crossing optuna cost
    .venv/bin/python benchmarks/bench_pruning.py --trials 27       # a smaller search
    .venv/bin/python benchmarks/bench_pruning.py --only seeds      # ASHA and Hyperband over 5 more seeds (~5 min)

Synthetic learning curves with a known ranking: a trial with parameters (a, b) reports
loss_t = a + b / t at steps t = 1..T, sleeping a fixed time per step, and ends with loss_T.
- "parallel": b = 1 for every trial, so the ranking is the same at every step (pruning cannot be misled).
- "crossing": b is tuned too, so early steps rank by a + b, the end by a + b / T (slow starters exist).
nbtune runs each set unpruned, with ASHA, Hyperband and the median rule (random search, one seed: every
nbtune search evaluates the same configurations, so a gap in the best value is the pruning's doing).
Optuna runs the crossing set on the same Spark session through MLflow's `MlflowSparkStudy` with its
SuccessiveHalvingPruner and MedianPruner (Optuna is a benchmark-only extra: `pip install nbtune[bench]`).
Then the cost of one `nbtune.report` on the Spark pool, and slot efficiency of many short reporting trials.
`--only seeds` (not in the default run) repeats ASHA and Hyperband on the crossing curves with other seeds;
with random search a seed's configurations are fixed, so its unpruned best is known without running it.
Machines here are shared and noisy: compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import nbtune
from nbtune.spark._session import start_local_session

P = 2
A_RANGE = (0.2, 1.0)
B_RANGE = (0.5, 1.5)  # crossing curves; parallel ones use B_FIXED
B_FIXED = 1.0

CURVE_CELL = """import time
import nbtune
a = 0.6  # tune: uniform({a_lo}, {a_hi})
{b_line}
for t in range(1, steps + 1):
    time.sleep(nap)
    loss = a + b / t
    nbtune.report(step=t, loss=loss)
"""

COST_CELL = """import statistics
import time
import nbtune
x = 0.5  # tune: uniform(0, 1)
rtts = []
for t in range(1, reports + 1):
    t0 = time.perf_counter()
    nbtune.report(step=t, loss=1.0 / t)  # the same curve in every trial: ASHA judges each rung, prunes none
    rtts.append(time.perf_counter() - t0)
rtts.sort()
report_ms = 1000 * statistics.median(rtts)
report_p90_ms = 1000 * rtts[int(0.9 * len(rtts))]
loss = x
"""

SHORT_CELL = """import statistics
import time
import nbtune
x = 0.5  # tune: uniform(0, 1)
work = 0.0
rtts = []
for t in range(1, reports + 1):
    t0 = time.perf_counter()
    time.sleep(nap)
    t1 = time.perf_counter()
    work += t1 - t0
    {report}
report_ms = 1000 * statistics.median(rtts) if rtts else 0.0
loss = x
"""


def curve_cell(curves: str) -> str:
    b_line = f"b = 1.0  # tune: uniform{B_RANGE}" if curves == "crossing" else f"b = {B_FIXED}"
    return CURVE_CELL.format(a_lo=A_RANGE[0], a_hi=A_RANGE[1], b_line=b_line)


def final_loss(params: dict[str, Any], steps: int) -> float:
    """What a configuration ends at had it run all its steps: the known ranking."""
    return float(params["a"]) + float(params.get("b", B_FIXED)) / steps


def run_nbtune(spark: Any, curves: str, prune: str, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    result = nbtune.tune(
        curve_cell(curves),
        {"spark": spark, "steps": args.steps, "nap": args.nap},
        backend="spark",
        parallelism=P,
        max_evals=args.trials,
        algo=args.algo,
        seed=args.seed,
        prune=prune,
        max_steps=args.steps,
        quiet=True,
        mlflow=False,
    )
    wall = time.perf_counter() - start
    counts = result.counts()
    assert counts["ok"] + counts["pruned"] == args.trials, counts
    return {
        "wall": wall,
        "best": result.best_value,
        "oracle": min(final_loss(r.params, args.steps) for r in result.records),
        "ok": counts["ok"],
        "pruned": counts["pruned"],
        "steps": sum(r.step for r in result.records),
        "pruned_at_end": sum(1 for r in result.records if r.status == "pruned" and r.step >= args.steps),
    }


def run_optuna(spark: Any, pruner_name: str, args: argparse.Namespace, uri: str, experiment_id: str) -> dict[str, Any]:
    import optuna
    from mlflow.optuna.storage import MlflowStorage
    from mlflow.pyspark.optuna.study import MlflowSparkStudy
    from optuna.trial import TrialState

    steps, nap, b_range = args.steps, args.nap, B_RANGE

    def objective(trial: Any) -> float:
        import time

        import optuna

        a = trial.suggest_float("a", *A_RANGE)
        b = trial.suggest_float("b", *b_range)
        spent: list[float] = []
        for t in range(1, steps + 1):
            time.sleep(nap)
            loss = a + b / t
            t0 = time.perf_counter()
            trial.report(loss, t)
            prune = t < steps and trial.should_prune()  # a trial that ran every step completes
            spent.append(time.perf_counter() - t0)
            if prune:
                trial.set_user_attr("report_s", statistics.median(spent))
                raise optuna.TrialPruned()
        trial.set_user_attr("report_s", statistics.median(spent))
        return loss

    if pruner_name == "sha":
        pruner: Any = optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    else:
        pruner = optuna.pruners.MedianPruner()  # 5 start-up trials, no warm-up steps
    start = time.perf_counter()
    study = MlflowSparkStudy(
        f"bench-{pruner_name}-{time.time_ns()}",
        MlflowStorage(experiment_id=experiment_id),
        sampler=optuna.samplers.RandomSampler(seed=args.seed),
        pruner=pruner,
        mlflow_tracking_uri=uri,
    )
    study.optimize(objective, n_trials=args.trials, n_jobs=P)
    wall = time.perf_counter() - start
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    report_s = [t.user_attrs["report_s"] for t in trials if "report_s" in t.user_attrs]
    return {
        "wall": wall,
        "best": min(t.value for t in complete) if complete else float("nan"),
        "oracle": min(final_loss(t.params, steps) for t in trials),
        "ok": len(complete),
        "pruned": len(pruned),
        "steps": sum(len(t.intermediate_values) for t in trials),
        "report_ms": 1000 * statistics.median(report_s) if report_s else float("nan"),
    }


def run_cost(spark: Any, trials: int, reports: int) -> dict[str, float]:
    result = nbtune.tune(
        COST_CELL,
        {"spark": spark, "reports": reports},
        backend="spark",
        parallelism=P,
        max_evals=trials,
        algo="random",
        prune="asha",
        quiet=True,
        mlflow=False,
        log_metrics=("report_ms", "report_p90_ms"),
    )
    assert result.counts()["ok"] == trials, result.counts()
    per_trial = [r.log_metrics["report_ms"] for r in result.records]
    return {
        "median": statistics.median(per_trial),
        "p90": statistics.median(r.log_metrics["report_p90_ms"] for r in result.records),
        "low": min(per_trial),
        "high": max(per_trial),
    }


def run_short(spark: Any, trials: int, reports: int, nap: float, report: bool) -> dict[str, float]:
    sent = "nbtune.report(step=t, loss=1.0 / t)\n    rtts.append(time.perf_counter() - t1)"
    cell = SHORT_CELL.format(report=sent if report else "pass")
    start = time.perf_counter()
    result = nbtune.tune(
        cell,
        {"spark": spark, "reports": reports, "nap": nap},
        backend="spark",
        parallelism=P,
        max_evals=trials,
        algo="random",
        prune="asha" if report else "none",
        quiet=True,
        mlflow=False,
        log_metrics=("work", "report_ms"),
    )
    wall = time.perf_counter() - start
    assert result.counts()["ok"] == trials, result.counts()
    durations = sum(r.duration for r in result.records)
    work = sum(r.log_metrics["work"] for r in result.records)
    report_ms = statistics.median(r.log_metrics["report_ms"] for r in result.records)
    return {"wall": wall, "eff": durations / (P * wall), "work_eff": work / (P * wall), "report_ms": report_ms}


def gap(value: float, reference: float) -> float:
    return (value - reference) / abs(reference)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", nargs="*", default=["parallel", "crossing", "optuna", "cost"])
    parser.add_argument("--trials", type=int, default=81)
    parser.add_argument("--steps", type=int, default=27)
    parser.add_argument("--nap", type=float, default=0.05, help="seconds of work per step")
    parser.add_argument("--algo", default="random", choices=["random", "tpe"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--short-trials", type=int, default=200, help="trials of the slot-efficiency run")
    parser.add_argument("--seeds", type=int, nargs="*", default=[1, 2, 3, 4, 5], help="seeds of `--only seeds`")
    args = parser.parse_args()
    os.environ["NBTUNE_SPARK_MASTER"] = f"local[{P}]"
    spark = start_local_session()
    print(
        f"python {sys.version.split()[0]}, pyspark {spark.version}, master {spark.conf.get('spark.master')}, P={P}; "
        f"{args.trials} trials x {args.steps} steps x {args.nap} s, algo {args.algo}, seed {args.seed}",
        flush=True,
    )
    warm = argparse.Namespace(**{**vars(args), "trials": 2, "steps": 2, "nap": 0.01})
    run_nbtune(spark, "crossing", "asha", warm)  # the session's first-job costs, outside the measured runs

    rows: list[dict[str, Any]] = []
    reference: dict[str, dict[str, Any]] = {}
    for curves in ("parallel", "crossing"):
        if curves not in args.only:
            continue
        print(f"\n{curves} curves: nbtune", flush=True)
        for prune in ("none", "asha", "hyperband", "median"):
            m = run_nbtune(spark, curves, prune, args)
            reference.setdefault(curves, m)
            base = reference[curves]
            m.update(curves=curves, who=f"nbtune {prune}", vs=base)
            rows.append(m)
            print(
                f"  {prune:9s}: wall {m['wall']:6.1f} s ({m['wall'] / base['wall']:.2f}x unpruned), best "
                f"{m['best']:.4f} (gap {gap(m['best'], base['best']):+.2%}; best of its configurations "
                f"{m['oracle']:.4f}), {m['ok']} ok / {m['pruned']} pruned, {m['steps']} steps run"
                + (f", {m['pruned_at_end']} pruned at their last step" if m["pruned_at_end"] else ""),
                flush=True,
            )

    if "optuna" in args.only:
        import mlflow
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        store = tempfile.mkdtemp(prefix="bench_pruning_")
        uri = f"sqlite:///{store}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        experiment_id = mlflow.create_experiment("bench_pruning_optuna")
        print(f"\ncrossing curves: Optuna {optuna.__version__} + MLflow {mlflow.__version__} ({uri})", flush=True)
        run_optuna(spark, "sha", argparse.Namespace(**{**vars(warm), "trials": 4}), uri, experiment_id)  # warm-up
        base = reference.get("crossing")
        for name, ours in (("sha", "asha"), ("median", "median")):
            m = run_optuna(spark, name, args, uri, experiment_id)
            m.update(curves="crossing", who=f"Optuna {name}", vs=base)
            rows.append(m)
            mine = next((r for r in rows if r["curves"] == "crossing" and r["who"] == f"nbtune {ours}"), None)
            m["nbtune/optuna"] = mine["wall"] / m["wall"] if mine else float("nan")
            print(
                f"  {name:9s}: wall {m['wall']:6.1f} s, best {m['best']:.4f} (best of its configurations "
                f"{m['oracle']:.4f}), {m['ok']} complete / {m['pruned']} pruned, {m['steps']} steps run, "
                f"report + should_prune median {m['report_ms']:.0f} ms; nbtune {ours} / Optuna {name}: "
                f"{m['nbtune/optuna']:.2f}x",
                flush=True,
            )

    cost: dict[str, Any] = {}
    if "cost" in args.only:
        print("\nthe cost of a report (Spark pool, prune asha)", flush=True)
        cost["rtt"] = run_cost(spark, trials=8, reports=200)
        c = cost["rtt"]
        print(
            f"  8 trials x 200 reports: median round trip {c['median']:.3f} ms (trials' medians "
            f"{c['low']:.3f}-{c['high']:.3f} ms), p90 {c['p90']:.3f} ms",
            flush=True,
        )
        n = args.short_trials
        for report in (False, True):  # without reports first: the same trials' baseline
            m = run_short(spark, n, 10, 0.01, report)
            cost["with" if report else "without"] = m
            print(
                f"  {n} trials x 10 steps of 0.01 s, {'reporting each step' if report else 'no reports'}: wall "
                f"{m['wall']:.1f} s, efficiency {m['eff']:.3f} (trial durations), {m['work_eff']:.3f} (sleeps only)"
                + (f", median report round trip between steps {m['report_ms']:.3f} ms" if report else ""),
                flush=True,
            )

    if "seeds" in args.only:  # random search: a seed's configurations are known, so is its unpruned best
        print(f"\ncrossing curves, more seeds: {args.seeds}", flush=True)
        for prune in ("asha", "hyperband"):
            gaps, fractions = [], []
            for seed in args.seeds:
                m = run_nbtune(spark, "crossing", prune, argparse.Namespace(**{**vars(args), "seed": seed}))
                gaps.append(gap(m["best"], m["oracle"]))
                fractions.append(m["steps"] / (args.trials * args.steps))
                print(
                    f"  {prune:9s} seed {seed}: wall {m['wall']:5.1f} s, best {m['best']:.4f}, unpruned best "
                    f"{m['oracle']:.4f} (gap {gaps[-1]:+.2%}), {fractions[-1]:.2f} of the unpruned steps",
                    flush=True,
                )
            within = sum(1 for g in gaps if g <= 0.01)
            print(
                f"  {prune}: best within 1% in {within} of {len(gaps)} seeds (worst {max(gaps):+.2%}), "
                f"steps run {min(fractions):.2f}-{max(fractions):.2f} of unpruned",
                flush=True,
            )

    if rows:
        print(
            "\n| curves | search | wall | vs unpruned | best loss | gap to unpruned best | "
            "gap to the best of its configurations | ok / pruned | steps run |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for m in rows:
            vs = m["vs"] if m["who"].startswith("nbtune") else None  # Optuna samples other configurations
            print(
                f"| {m['curves']} | {m['who']} | {m['wall']:.1f} s | "
                + (f"{m['wall'] / m['vs']['wall']:.2f}x" if m["vs"] else "")
                + f" | {m['best']:.4f} | "
                + (f"{gap(m['best'], vs['best']):+.2%}" if vs else "")
                + f" | {gap(m['best'], m['oracle']):+.2%} | {m['ok']} / {m['pruned']} | {m['steps']} |"
            )
        for m in rows:
            if "nbtune/optuna" in m:
                print(f"- nbtune / {m['who']} wall: {m['nbtune/optuna']:.2f}x")
    spark.stop()


if __name__ == "__main__":
    main()
