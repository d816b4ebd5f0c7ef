"""`--backend driver` vs Spark ML's own CrossValidator grid, on the spark_ml template's pipeline, local[2].

    .venv/bin/python benchmarks/bench_sparkml.py              # 16 trials vs a 4 x 4 grid (about 4 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_sparkml.py --repeats 3  # three rounds, interleaved; median ratios
    .venv/bin/python benchmarks/bench_sparkml.py --quick      # 4 trials vs a 2 x 2 grid, to check it runs
    .venv/bin/python benchmarks/bench_sparkml.py --no-refit   # also: trials that skip the refit, the best refit once

Every side fits the same Pipeline (scaling, PCA(k), logistic regression(regParam)) on the same cached
digits DataFrames with 3-fold cross-validation and parallelism 2: nbtune runs `budget` trials, each a
CrossValidator over its one parameter map (the template's cell), once as the template runs it
(`--prune asha`: each fold reports, hopeless trials end after a fold) and once without pruning; the
grid is one CrossValidator over `budget` parameter maps. Prints the walls and their ratios, the
held-out accuracy of each side's pick, and nbtune's own cost per trial (a trial whose cell does
nothing: suggestion, threads, job tags and bookkeeping). Machines here are shared and noisy: compare
ratios, not seconds.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from typing import Any

import nbtune

P = 2
FOLDS = 3

# The template's pipeline (templates/spark_ml.ipy), reading the DataFrames the notebook made once.
CELL = """
from pyspark.ml import Pipeline
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import PCA, StandardScaler, VectorAssembler
from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

reg = 0.01   # tune: loguniform(1e-4, 1)
k = 16       # tune: choice(4, 8, 16, 32)

pipeline = Pipeline(stages=[
    VectorAssembler(inputCols=pixel_columns, outputCol="pixels"),
    StandardScaler(inputCol="pixels", outputCol="scaled"),
    PCA(k=k, inputCol="scaled", outputCol="features"),
    LogisticRegression(regParam=reg, maxIter=30, labelCol="target"),
])
evaluator = MulticlassClassificationEvaluator(labelCol="target", metricName="accuracy")
cv = CrossValidator(estimator=pipeline, estimatorParamMaps=ParamGridBuilder().build(),
                    evaluator=evaluator, numFolds=3, seed=0)
fitted = cv.fit(train)
accuracy = fitted.avgMetrics[0]
model = fitted.bestModel
test_accuracy = evaluator.evaluate(model.transform(test))
"""

# --no-refit: the same pipeline and 3-fold cross-validation without CrossValidator, so a trial does not
# refit its model on all training rows; the search's best is refit once afterwards (refit_best).
CELL_NO_REFIT = (
    CELL[: CELL.index("cv = CrossValidator")]
    + """from functools import reduce

scores = []
for i, held in enumerate(folds):
    rest = reduce(lambda a, b: a.unionAll(b), [f for j, f in enumerate(folds) if j != i])
    scores.append(evaluator.evaluate(pipeline.fit(rest).transform(held)))
accuracy = sum(scores) / len(scores)
"""
)


def data(spark: Any) -> dict[str, Any]:
    """The template's split of scikit-learn's digits, as cached Spark DataFrames."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits(as_frame=True).frame
    train_rows, test_rows = train_test_split(digits, test_size=0.25, random_state=0, stratify=digits["target"])
    train, test = spark.createDataFrame(train_rows).cache(), spark.createDataFrame(test_rows).cache()
    train.count(), test.count()
    return {"train": train, "test": test, "pixel_columns": [c for c in digits.columns if c != "target"]}


def grid_search(ns: dict[str, Any], side: int) -> tuple[float, float, dict[str, Any]]:
    """CrossValidator over a side x side grid (regParam on a log scale x PCA k): wall, held-out accuracy, pick."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator
    from pyspark.ml.tuning import CrossValidator, ParamGridBuilder

    pipeline = template_pipeline(ns, k=16, reg=0.0)
    pca, lr = pipeline.getStages()[2:]
    regs = [10 ** (-4 + 4 * i / (side - 1)) for i in range(side)]  # 1e-4 .. 1, as the template's range
    ks = [4, 8, 16, 32] if side == 4 else [4, 32]  # the template's choices (their ends at side 2)
    grid = ParamGridBuilder().addGrid(lr.regParam, regs).addGrid(pca.k, ks).build()
    evaluator = MulticlassClassificationEvaluator(labelCol="target", metricName="accuracy")
    cv = CrossValidator(
        estimator=pipeline, estimatorParamMaps=grid, evaluator=evaluator, numFolds=FOLDS, parallelism=P, seed=0
    )
    start = time.perf_counter()
    fitted = cv.fit(ns["train"])
    wall = time.perf_counter() - start
    best = max(range(len(grid)), key=lambda i: fitted.avgMetrics[i])
    pick = {"reg": grid[best][lr.regParam], "k": grid[best][pca.k], "cv": fitted.avgMetrics[best]}
    return wall, evaluator.evaluate(fitted.bestModel.transform(ns["test"])), pick


def nbtune_search(
    spark: Any, ns: dict[str, Any], budget: int, seed: int, refit: bool = True, prune: str = "none"
) -> tuple[float, float, dict[str, Any], Any]:
    """nbtune's driver backend over the same pipeline: wall, the best trial's held-out accuracy, its pick.

    With refit=False the trials cross-validate without refitting, and the wall includes one refit of the best.
    """
    start = time.perf_counter()
    folds = [f.cache() for f in ns["train"].randomSplit([1.0] * FOLDS, seed=0)] if not refit else []
    result = nbtune.tune(
        CELL if refit else CELL_NO_REFIT,
        {"spark": spark, **ns, "folds": folds},
        backend="driver",
        parallelism=P,
        max_evals=budget,
        metric="accuracy",
        mode="max",
        log_metrics=("test_accuracy",) if refit else (),
        seed=seed,
        prune=prune,
        mlflow=False,
        quiet=True,
    )
    best = result.best_trial
    assert best is not None, result.summary()
    pick = {**best.params, "cv": best.value}
    if refit:
        return time.perf_counter() - start, float(best.log_metrics["test_accuracy"]), pick, result
    held_out = refit_best(ns, float(best.params["reg"]), int(best.params["k"]))
    return time.perf_counter() - start, held_out, pick, result


def refit_best(ns: dict[str, Any], reg: float, k: int) -> float:
    """The best setting fitted once on all training rows: its held-out accuracy."""
    from pyspark.ml.evaluation import MulticlassClassificationEvaluator

    evaluator = MulticlassClassificationEvaluator(labelCol="target", metricName="accuracy")
    return float(evaluator.evaluate(template_pipeline(ns, k, reg).fit(ns["train"]).transform(ns["test"])))


def template_pipeline(ns: dict[str, Any], k: int, reg: float) -> Any:
    """The template's Pipeline (as CELL builds it) for the grid and the refit: assembler, scaler, PCA(k), LR(reg)."""
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import PCA, StandardScaler, VectorAssembler

    return Pipeline(
        stages=[
            VectorAssembler(inputCols=ns["pixel_columns"], outputCol="pixels"),
            StandardScaler(inputCol="pixels", outputCol="scaled"),
            PCA(k=k, inputCol="scaled", outputCol="features"),
            LogisticRegression(regParam=reg, maxIter=30, labelCol="target"),
        ]
    )


def own_cost(spark: Any, trials: int) -> float:
    """Seconds per trial of nbtune itself on the driver backend: a cell that does nothing, one slot."""
    start = time.perf_counter()
    nbtune.tune(
        "reg = 0.01  # tune: loguniform(1e-4, 1)\nk = 16  # tune: choice(4, 8, 16, 32)\naccuracy = reg\n",
        {"spark": spark},
        backend="driver",
        parallelism=1,
        max_evals=trials,
        metric="accuracy",
        mode="max",
        mlflow=False,
        quiet=True,
    )
    return (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 trials vs a 2 x 2 grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="rounds of every side, interleaved")
    parser.add_argument("--no-refit", action="store_true", help="also trials that skip the refit (see CELL_NO_REFIT)")
    args = parser.parse_args()
    side = 2 if args.quick else 4
    budget = side * side

    os.environ.setdefault("NBTUNE_SPARK_MASTER", f"local[{P}]")
    from nbtune.spark._session import start_local_session

    spark = start_local_session()
    rounds: list[dict[str, tuple[float, float, dict[str, Any]]]] = []
    try:
        ns = data(spark)
        nbtune_search(spark, ns, 1, args.seed)  # warm-up: the JVM's JIT and the Python workers, for both sides
        cost = own_cost(spark, 40 if args.quick else 200)
        for _ in range(args.repeats):
            sides = {"CrossValidator grid": grid_search(ns, side)}
            wall, test, pick, result = nbtune_search(spark, ns, budget, args.seed, prune="asha")
            sides["nbtune, the template"] = (wall, test, pick)
            busy = sum(r.duration for r in result.records)
            counts = result.counts()
            sides["nbtune, no pruning"] = nbtune_search(spark, ns, budget, args.seed)[:3]
            if args.no_refit:
                sides["nbtune, no refit per trial"] = nbtune_search(spark, ns, budget, args.seed, refit=False)[:3]
            rounds.append(sides)
            _show(sides, len(rounds))
            print(f"the template: {counts['ok']} ok, {counts['pruned']} pruned; efficiency {busy / (P * wall):.2f}")
    finally:
        spark.stop()

    print(f"\nSpark ML pipeline on digits, local[{P}], {FOLDS}-fold CV, parallelism {P}, {budget} settings")
    for name in rounds[0]:
        if name != "CrossValidator grid":
            ratios = [r[name][0] / r["CrossValidator grid"][0] for r in rounds]
            shown = ", ".join(f"{x:.2f}" for x in ratios)
            print(f"{name} wall / grid wall: median {statistics.median(ratios):.2f}x ({shown})")
    print(f"nbtune's own cost per trial (empty cell, 1 slot): {cost * 1000:.1f} ms")


def _show(sides: dict[str, tuple[float, float, dict[str, Any]]], n: int) -> None:
    print(f"\nround {n}: {'search':<28}{'wall':>9}{'held-out acc':>14}  pick (CV accuracy)")
    for name, (wall, test, pick) in sides.items():
        print(f"{'':9}{name:<28}{wall:>8.1f}s{test:>14.4f}  {_pick(pick)}")


def _pick(pick: dict[str, Any]) -> str:
    reg = pick["reg"]
    shown = f"{reg:.2g}" if isinstance(reg, float) and not math.isnan(reg) else str(reg)
    return f"reg={shown}, k={pick['k']} ({pick['cv']:.4f})"


if __name__ == "__main__":
    main()
