"""Model hopper parallelism: the schedule (pure), the bad-input errors, and real searches on Spark local[2]."""

from __future__ import annotations

import itertools
import os
import random
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from spark_fixtures import local_spark  # noqa: F401 - fixture

import nbtune
from nbtune._errors import SearchFailed, TuneUsageError
from nbtune._options import TuneOptions
from nbtune._run import run_search
from nbtune.cell._parse import parse_cell
from nbtune.cell._space import search_space
from nbtune.hopper._early_stop import EarlyStop
from nbtune.hopper._fit import StopRule
from nbtune.hopper._plan import check_options, find_fit, make_plan, partition
from nbtune.hopper._schedule import Hop, HopSchedule, Visit
from nbtune.search._build import build_objective
from nbtune.search._loop import Search
from nbtune.search._reports import ReportHub
from nbtune.trial._payload import pack

DATA_DIR = Path(__file__).parent.parent.parent / "shared" / "data" / "fashion-mnist"


def hopper_options(**changes: Any) -> TuneOptions:
    """TuneOptions for a hopper search (built directly: `--data X,Y` without `--by` is the hopper's form)."""
    base: dict[str, Any] = dict(
        hopper=True, data="x_train,y_train", mlflow=False, quiet=True, backend="spark", metric="val_accuracy"
    )
    return TuneOptions(**{**base, "mode": "max", **changes})


# -- the schedule, simulated with a clock of our own ---------------------------------------------------


def simulate(
    workers: int,
    epochs: dict[int, int],
    durations: Any,
    joins: dict[int, int] | None = None,
    at_once: int | None = None,
) -> tuple[HopSchedule, float]:
    """Run a schedule to its end: hop lengths from `durations(model, worker)`; model -> epochs; the last end time.

    `joins` holds models back until that many hops have finished (they join later, as a search's new trials do);
    `at_once` lets models join in order as others leave, at most that many in the schedule (the executor's slots).
    """
    now = [0.0]
    schedule = HopSchedule(workers, clock=lambda: now[0])
    waiting = dict(joins or {})
    queued = list(epochs) if at_once else []
    for model, n in epochs.items():
        if model not in waiting and not queued:
            schedule.add(model, n)
    running: list[tuple[float, Hop]] = []
    finished = 0
    while True:
        for model in [m for m, after in waiting.items() if finished >= after]:
            schedule.add(model, epochs[model])
            del waiting[model]
        while queued and at_once and len(schedule.models) < at_once:
            schedule.add(queued[0], epochs[queued.pop(0)])
        for hop in schedule.assign():
            running.append((now[0] + durations(hop.model, hop.worker), hop))
        assert schedule.assign() == [], "a free worker was left idle while a model could go there"
        if not running:
            break
        now[0] = min(end for end, _ in running)  # what ended meanwhile is handled together, as the executor's poll does
        for end, hop in [r for r in running if r[0] == now[0]]:
            running.remove((end, hop))
            finished += 1
            if schedule.done(hop) and schedule.epoch_of(hop.model) >= epochs[hop.model]:
                schedule.remove(hop.model)
    assert not waiting
    return schedule, now[0]


def check_visits(visits: list[Visit], workers: int, epochs: dict[int, int]) -> None:
    """Every model on every worker exactly once per epoch; never two models on one worker at once."""
    done = [v for v in visits if v.status == "done"]
    seen = Counter((v.model, v.epoch, v.worker) for v in done)
    expected = {(m, e, w) for m, n in epochs.items() for e in range(n) for w in range(workers)}
    assert set(seen) == expected
    assert set(seen.values()) == {1}
    for worker in range(workers):
        on = sorted((v.start, v.end or 0.0) for v in visits if v.worker == worker)
        for (_, end), (start, _) in itertools.pairwise(on):
            assert start >= end, f"two models on worker {worker} at once"
    for model in epochs:  # one model is on one worker at a time
        on = sorted((v.start, v.end or 0.0) for v in visits if v.model == model)
        for (_, end), (start, _) in itertools.pairwise(on):
            assert start >= end, f"model {model} on two workers at once"


@pytest.mark.parametrize(("workers", "models"), [(2, 2), (2, 4), (3, 5), (4, 3)])
def test_every_model_visits_every_partition_once_per_epoch(workers, models):
    rng = random.Random(workers * 10 + models)
    lengths = {(m, w): rng.uniform(0.5, 2.0) for m in range(models) for w in range(workers)}
    epochs = {m: 1 + m % 3 for m in range(models)}
    schedule, _ = simulate(workers, epochs, lambda m, w: lengths[m, w])
    check_visits(schedule.visits, workers, epochs)


@pytest.mark.parametrize(("workers", "models"), [(2, 2), (2, 4), (3, 3), (3, 6)])
def test_workers_stay_busy_when_there_are_as_many_models_as_workers(workers, models):
    epochs = dict.fromkeys(range(models), 3)
    schedule, end = simulate(workers, epochs, lambda m, w: 1.0)
    busy = sum((v.end or 0.0) - v.start for v in schedule.visits)
    assert busy == models * 3 * workers
    assert end == busy / workers  # no worker ever waited


def test_twice_as_many_models_as_workers_keep_workers_busy_when_models_differ_in_speed():
    # Why the executor trains 2 models per worker by default: 16 models of 4 epochs whose hops take
    # 1-3 s (batch size, width). With one model per worker, a worker whose model finished early waits
    # for the slower one to free the next partition.
    def efficiency(at_once: int, seed: int) -> float:
        rng = random.Random(seed)
        speed = {m: rng.choice([1.0, 1.5, 2.0, 3.0]) for m in range(16)}
        epochs = dict.fromkeys(speed, 4)
        schedule, end = simulate(2, epochs, lambda m, w: speed[m], at_once=at_once)
        check_visits(schedule.visits, 2, epochs)
        return sum(speed.values()) * 4 * 2 / (2 * end)  # hop-seconds over worker-seconds

    one_each = statistics.median(efficiency(2, seed) for seed in range(10))
    two_each = statistics.median(efficiency(4, seed) for seed in range(10))
    assert one_each < 0.9 and two_each > 0.95, (one_each, two_each)


def test_models_progress_together_rather_than_one_after_another():
    schedule, _ = simulate(2, dict.fromkeys(range(4), 3), lambda m, w: 1.0)
    first_epochs_end = max(v.end or 0.0 for v in schedule.visits if v.epoch == 0)
    third_epochs_start = min(v.start for v in schedule.visits if v.epoch == 2)
    assert first_epochs_end <= third_epochs_start  # every model finished its first epoch before any began its third


def test_new_models_join_and_finished_ones_leave():
    epochs = {0: 1, 1: 3, 2: 2, 3: 2}
    schedule, _ = simulate(2, epochs, lambda m, w: 1.0 + 0.3 * m, joins={2: 3, 3: 5})
    check_visits(schedule.visits, 2, epochs)
    starts = {m: min(v.start for v in schedule.visits if v.model == m) for m in epochs}
    assert starts[2] > 0 and starts[3] > starts[2]
    assert all(v.epoch < epochs[v.model] for v in schedule.visits)  # nothing trains past its epochs


def test_a_lost_hop_does_not_count_and_the_model_goes_again():
    schedule = HopSchedule(2, clock=lambda: 0.0)
    schedule.add(0, 1)
    (hop,) = schedule.assign({0})
    schedule.lost(hop)
    (again,) = schedule.assign({0})
    assert again == hop
    assert not schedule.done(again)
    (last,) = schedule.assign()
    assert last.worker == 1 and last.last and schedule.done(last)
    assert [v.status for v in schedule.visits] == ["lost", "done", "done"]


def test_a_removed_model_gets_no_more_hops():
    schedule = HopSchedule(2)
    schedule.add(0, 5)
    schedule.add(1, 5)
    hops = schedule.assign()
    schedule.remove(0)
    for hop in hops:
        schedule.done(hop)
    assert {h.model for h in schedule.assign()} == {1}


def test_early_stopping_at_epoch_boundaries_as_keras_does():
    stop = EarlyStop(StopRule("val_loss", "min", 0.0, patience=1, baseline=None, restore_best=True))
    losses = [0.5, 0.4, 0.45, 0.41, 0.3]
    stopped = [stop.stop(e, {"val_loss": v}, f"state{e}") for e, v in enumerate(losses)]
    assert stopped == [False, False, True, True, False]
    assert stop.best_state == "state4" and stop.best == 0.3


# -- bad input: one-line UsageErrors before any Spark job -----------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"
CELL = """
import keras
lr = 0.01  # tune: loguniform(1e-3, 1e-1)
layers = [keras.Input((8,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2, activation="softmax")]
model = keras.Sequential(layers)
model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=64, epochs=EPOCHS, validation_split=0.2, verbose=0)
val_accuracy = history.history["val_accuracy"][-1]
"""


def synthetic(rows: int = 2000, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 8)).astype("float32")
    return {"x_train": x, "y_train": (x[:, 0] + x[:, 1] > 0).astype("int32"), "EPOCHS": 2}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"backend": "local"}, "use --backend auto or spark, not local"),
        ({"backend": "sparktrials"}, "use --backend auto or spark, not sparktrials"),
        ({"backend": "driver"}, "use --backend auto or spark, not driver"),
        ({"by": ("store",)}, "--hopper cannot be used with --by"),
        ({"data": None}, "--hopper needs --data X,Y"),
        ({"log_model": "best"}, "--log-model best needs --backend driver"),
        ({"data": "x_train,y-train"}, "--data must be variable names separated by commas"),
    ],
)
def test_options_that_cannot_hop(changes, message):
    with pytest.raises(TuneUsageError, match=message):
        check_options(hopper_options(**changes))
    with pytest.raises(TuneUsageError, match=message):  # the search stops there, before Spark
        run_search(parse_cell(CELL), hopper_options(**changes), synthetic())


def test_the_magic_and_tune_take_hopper_and_data_and_say_what_is_wrong(ip):
    from nbtune.cell._flags import parse_flags

    options = parse_flags("--hopper --data x_train,y_train --parallelism 4")
    assert options.hopper and options.data == "x_train,y_train" and options.parallelism == 4
    ip.user_ns.update(synthetic())
    line = "--hopper --data x_train,y_train --backend local --metric val_accuracy --mode max"
    with pytest.raises(nbtune.UsageError, match="use --backend auto or spark, not local") as caught:
        ip.run_cell_magic("tune", line, CELL)
    assert "\n" not in str(caught.value)
    with pytest.raises(TuneUsageError, match=r"--data needs --by KEY \(one search per group\) or --hopper"):
        nbtune.tune(CELL, synthetic(), data="x_train", metric="val_accuracy")


@pytest.mark.spark
def test_tune_with_hopper_runs_the_search_end_to_end_and_the_dashboard_shows_the_strip(local_spark, monkeypatch):
    from widget_comms import record_comms

    from nbtune.ui._dashboard import Dashboard

    record_comms(monkeypatch)
    dashboard = Dashboard(show=lambda widget: None)
    namespace = {**synthetic(), "spark": local_spark}
    result = nbtune.tune(
        CELL,
        namespace,
        listeners=[dashboard],
        hopper=True,
        data="x_train,y_train",
        max_evals=3,
        metric="val_accuracy",
        mode="max",
        quiet=True,
        mlflow=False,
        seed=1,
    )
    assert [r.status for r in result.records] == ["ok"] * 3 and result.best_value > 0.8
    assert all([step for step, _ in r.curve] == [1, 2] for r in result.records)
    # The final strip: every trial's sub-epochs on both workers, numbered as the table numbers trials.
    assert dashboard.placement_plot.layout.display == "" and bytes(dashboard.placement_plot.value).startswith(PNG)
    workers, bars = dashboard._info.placement()
    assert workers == 2 and {b.worker for b in bars} == {0, 1}
    assert {b.trial for b in bars} == {r.number for r in result.records} and all(b.end >= b.start for b in bars)


def test_a_cell_without_model_fit():
    with pytest.raises(TuneUsageError, match=r"the cell has no model\.fit"):
        find_fit(parse_cell("import keras\nx = 1  # tune: uniform(0, 1)\nloss = x\n").body)


def test_a_validation_split_that_is_not_a_number():
    with pytest.raises(TuneUsageError, match="validation_split as a number") as info:
        find_fit(parse_cell("s = 0.1\nmodel.fit(x_train, y_train, validation_split=s)\n", 1).body, 1)
    assert info.value.line == 3


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"y_train": np.zeros(1999)}, "same number of rows: x_train has 2000, y_train has 1999"),
        ({"y_train": [0, 1] * 1000}, "--data y_train must be an array"),
        ({"x_train": np.zeros((1, 8)), "y_train": np.zeros(1)}, "1 training rows, fewer than the 2 Spark slots"),
        ({"x_train": np.zeros((3, 8)), "y_train": np.zeros(3)}, "3 training rows, fewer than the 4 Spark slots"),
    ],
)
def test_data_that_cannot_be_partitioned(data, message):
    workers = 4 if "4 Spark" in message else 2
    namespace = {**synthetic(), **data}
    with pytest.raises(TuneUsageError, match=message):
        make_plan(parse_cell(CELL).body, hopper_options(), namespace, workers)


def test_fit_must_train_on_the_data_arrays():
    cell = CELL.replace("model.fit(x_train, y_train", "model.fit(x_other, y_train")
    with pytest.raises(TuneUsageError, match="'x_other' \\(x\\), which --data does not name"):
        make_plan(parse_cell(cell).body, hopper_options(), {**synthetic(), "x_other": np.zeros(3)}, 2)


def test_partitions_cover_every_row_once():
    data = synthetic(1001)
    plan = make_plan(parse_cell(CELL).body, hopper_options(), data, 3)
    assert plan.rows == 801 and plan.validation is not None and len(plan.validation["x_train"]) == 200
    parts = partition(plan.train, 3, seed=0)
    assert sorted(len(p["x_train"]) for p in parts) == [267, 267, 267]
    rows = np.concatenate([p["x_train"] for p in parts])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, plan.train["x_train"].tolist()))
    for p in parts:  # x and y stay paired
        assert ((p["x_train"][:, 0] + p["x_train"][:, 1] > 0).astype("int32") == p["y_train"]).all()


# -- real searches on Spark local[2] --------------------------------------------------------------------


def hopper_search(cell: str, namespace: dict[str, Any], options: TuneOptions) -> Search:
    """The search run_search builds for --hopper, kept so that its executor (schedule, traffic) can be read."""
    from nbtune.hopper._search import hopper_search as build

    spec = parse_cell(cell, 1)
    space = search_space(spec.params, options.space, namespace)
    objective = build_objective(spec, namespace, options, space.names)
    return build(objective, space, options, namespace, [], None, None, ReportHub(options))


@pytest.mark.spark
@pytest.mark.slow
def test_a_search_hops_every_model_over_every_partition_and_sends_each_worker_its_partition(local_spark):
    namespace = synthetic()
    options = hopper_options(max_evals=4, parallelism=3, seed=3)
    search = hopper_search(CELL, namespace, options)
    result = search.run()
    executor: Any = search.executor
    assert [r.status for r in result.records] == ["ok"] * 4, [r.error for r in result.records]
    # The recorded schedule: every model on every partition once per epoch, one model per worker at a time.
    check_visits(executor.schedule.visits, 2, dict.fromkeys((r.tid for r in result.records), 2))
    # Each worker received its own partition once, and nothing else of --data: hops carry weights only.
    plan = make_plan(search.objective.body, options, namespace, 2)
    expected = {slot: pack(part).size for slot, part in enumerate(partition(plan.train, 2, options.seed))}
    traffic = executor.traffic
    assert traffic.partition_bytes == expected and traffic.partitions_sent == 2
    assert traffic.hops == 4 * 2 * 2
    assert traffic.hop_bytes_sent / traffic.hops < min(expected.values()) / 4
    # Per-epoch reports (the learning curves) with the validation pass, and the cell's metric as the result.
    for record in result.records:
        assert [step for step, _ in record.curve] == [1, 2]
        assert set(record.curve[-1][1]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
        assert record.value == pytest.approx(record.curve[-1][1]["val_accuracy"])
    assert result.best_value > 0.9


@pytest.mark.spark
def test_by_default_two_models_per_worker_train_together(local_spark):
    search = hopper_search(CELL, synthetic(), hopper_options(max_evals=4, seed=1))
    result = search.run()
    assert [r.status for r in result.records] == ["ok"] * 4, [r.error for r in result.records]
    assert result.parallelism == 4
    first = sorted(search.executor.schedule.visits, key=lambda v: v.start)[:4]  # type: ignore[attr-defined]
    assert len({v.model for v in first}) == 4  # all four started before any began its second partition


@pytest.mark.spark
def test_a_failing_cell_is_a_failed_trial_with_its_line(local_spark):
    cell = CELL.replace("model.compile(", "1 / 0\nmodel.compile(")
    with pytest.raises(SearchFailed, match="every trial failed") as info:
        run_search(parse_cell(cell, 1), hopper_options(max_evals=1), synthetic())
    (record,) = info.value.result.records
    assert record.status == "failed" and record.error == "line 7: ZeroDivisionError: division by zero"


@pytest.mark.spark
def test_too_few_rows_for_the_slots_stops_before_any_job(local_spark):
    with pytest.raises(TuneUsageError, match="fewer than the 2 Spark slots"):
        run_search(
            parse_cell(CELL, 1), hopper_options(), {**synthetic(), "x_train": np.zeros((1, 8)), "y_train": np.zeros(1)}
        )


FASHION = """
import keras
units = 64  # tune: choice(64)
model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(units, activation="relu"), keras.layers.Dense(10)])
model.compile(
    optimizer=keras.optimizers.Adam(1e-3),
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    metrics=["accuracy"],
)
history = model.fit(x_train, y_train, batch_size=32, epochs=3, validation_data=(x_test, y_test), verbose=0)
val_accuracy = history.history["val_accuracy"][-1]
"""


@pytest.mark.spark
@pytest.mark.slow
def test_hopping_reaches_the_accuracy_of_ordinary_training(local_spark, monkeypatch):
    monkeypatch.setenv("NBTUNE_DATA_DIR", str(DATA_DIR))
    from nbtune.datasets import fashion_mnist

    (x, y), (xt, yt) = fashion_mnist()
    namespace: dict[str, Any] = {
        "x_train": (x[:10000].reshape(-1, 784) / 255.0).astype("float32"),
        "y_train": y[:10000].astype("int32"),
        "x_test": (xt[:1000].reshape(-1, 784) / 255.0).astype("float32"),
        "y_test": yt[:1000].astype("int32"),
    }
    hopped = run_search(parse_cell(FASHION, 1), hopper_options(max_evals=1), namespace)
    assert hopped.records[0].status == "ok", hopped.records[0].error
    ordinary = dict(namespace, units=64)
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    exec(compile(FASHION, "<ordinary>", "exec"), ordinary)  # the same cell, trained by Keras' own fit
    # One run each, judged on 1,000 validation rows: a difference's standard deviation is about 0.018.
    assert hopped.best_value == pytest.approx(ordinary["val_accuracy"], abs=0.05)
    assert hopped.best_value > 0.75


@pytest.mark.spark
@pytest.mark.slow
@pytest.mark.parametrize("data", ["arrays", "dataframe"])
def test_a_killed_worker_gets_its_partition_again_and_no_finished_epoch_is_lost(local_spark, data):
    import signal
    import threading
    import time

    if data == "arrays":  # the driver sends slot 1's partition again
        search = hopper_search(CELL, {**synthetic(), "EPOCHS": 3}, hopper_options(max_evals=2, seed=5))
    else:  # slot 1's relaunched task reads the same rows again
        namespace = {"df": synthetic_frame(local_spark), "EPOCHS": 3}
        search = hopper_search(FRAME_CELL, namespace, hopper_options(data="df", max_evals=2, seed=5))
    executor: Any = search.executor
    killed: list[int] = []

    def kill_mid_search() -> None:  # once a second-epoch hop runs on worker 1, kill that worker's process
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not killed:
            running = [v for v in executor.schedule.visits if v.status == "running" and v.worker == 1 and v.epoch == 1]
            worker = executor._pool.workers.get(1)
            if running and worker is not None:
                os.kill(worker.pid, signal.SIGKILL)
                killed.append(running[0].model)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_mid_search, daemon=True)
    killer.start()
    result = search.run()
    killer.join()
    assert killed, "the search ended before a second-epoch hop ran on worker 1"
    assert [r.status for r in result.records] == ["ok", "ok"], [r.error for r in result.records]
    visits = executor.schedule.visits
    lost = [v for v in visits if v.status == "lost"]
    assert [(v.worker, v.epoch) for v in lost] == [(1, 1)]
    check_visits(visits, 2, {r.tid: 3 for r in result.records})  # the lost hop ran again; nothing else did
    assert executor.traffic.partitions_sent == 3  # the relaunched worker received partition 1 again
    if data == "dataframe":
        plan: Any = make_plan(search.objective.body, search.options, {"df": namespace["df"]}, 2)
        assert executor.traffic.partition_rows == dict(enumerate(plan.slot_rows))
    for record in result.records:
        assert [step for step, _ in record.curve] == [1, 2, 3]


def test_the_dashboard_strip_numbers_bars_as_trials_and_draws_a_png():
    from nbtune.hopper._strip import bars
    from nbtune.ui._plots import placement

    schedule, end = simulate(2, {0: 2, 1: 2}, lambda m, w: 1.0)
    drawn = bars(schedule.visits, {0: 3, 1: 4}, end)
    assert sorted({b.trial for b in drawn}) == [3, 4] and min(b.start for b in drawn) == 0.0
    assert all(b.status == "done" and b.end > b.start for b in drawn)
    assert placement(2, drawn).startswith(PNG)


def test_the_strip_shows_which_model_is_on_which_worker():
    from nbtune.hopper._strip import now_on, strip

    schedule, end = simulate(2, {0: 1, 1: 1}, lambda m, w: 1.0)
    assert strip(schedule.visits, 2, end, width=4) == ["w0 0011", "w1 1100"]
    running = HopSchedule(2, clock=lambda: 0.0)
    running.add(7, 1)
    running.assign()
    assert now_on(running.visits) == {0: 7}


@pytest.mark.spark
@pytest.mark.slow
def test_median_pruning_stops_a_hopeless_model_between_epochs(local_spark):
    cell = CELL.replace(
        "lr = 0.01  # tune: loguniform(1e-3, 1e-1)", "lr = 0.05  # tune: choice(0.05, 0.04, 0.03, 0.02, 1e-7)"
    )
    options = hopper_options(max_evals=5, parallelism=2, algo="grid", prune="median")
    search = hopper_search(cell, synthetic(), options)
    result = search.run()
    by_lr = {r.params["lr"]: r for r in result.records}
    assert by_lr[1e-7].status == "pruned" and by_lr[1e-7].step == 1  # after its first epoch, not its last
    assert by_lr[1e-7].value == by_lr[1e-7].curve[0][1]["val_accuracy"]  # the best it reported
    visits: list[Visit] = search.executor.schedule.visits  # type: ignore[attr-defined]
    for record in result.records:  # a pruned model trained its epochs so far over both partitions, then left
        hops = [v for v in visits if v.model == record.tid]
        assert len(hops) == 2 * (record.step if record.status == "pruned" else 2), record


@pytest.mark.spark
def test_early_stopping_in_the_fit_call_ends_a_model_at_an_epoch_boundary(local_spark):
    # min_delta=1.0: no epoch after the first improves val_accuracy enough, so patience 1 stops after epoch 2.
    stop = "callbacks=[keras.callbacks.EarlyStopping(monitor='val_accuracy', min_delta=1.0, patience=1)], "
    cell = CELL.replace("verbose=0)", stop + "verbose=0)\nepochs_run = len(history.history['val_loss'])")
    options = hopper_options(max_evals=1, log_metrics=("epochs_run",))
    search = hopper_search(cell, {**synthetic(), "EPOCHS": 5}, options)
    (record,) = search.run().records
    assert record.status == "ok", record.error
    assert [step for step, _ in record.curve] == [1, 2]
    assert record.log_metrics["epochs_run"] == 2  # the cell's History holds the epochs that ran
    assert len(search.executor.schedule.visits) == 4  # type: ignore[attr-defined]


# -- a Spark DataFrame as --data: each slot's task reads its own rows -----------------------------------

FRAME_CELL = CELL.replace("model.fit(x_train, y_train", 'model.fit(df["features"], df["label"]')


def synthetic_frame(spark: Any, rows: int = 2000, ragged: bool = False) -> Any:
    """synthetic() as a Spark DataFrame: features array<float>, label int."""
    import pandas as pd

    data = synthetic(rows)
    features = list(data["x_train"])
    if ragged:
        features[7] = features[7][:5]
    return spark.createDataFrame(pd.DataFrame({"features": features, "label": data["y_train"]}))


@pytest.mark.spark
def test_a_spark_dataframe_as_data_stays_on_the_workers_and_never_passes_the_driver(local_spark):
    df = synthetic_frame(local_spark)
    options = hopper_options(data="df", max_evals=4, parallelism=3, seed=3)
    search = hopper_search(FRAME_CELL, {"df": df, "EPOCHS": 2}, options)
    result = search.run()
    executor: Any = search.executor
    assert [r.status for r in result.records] == ["ok"] * 4, [r.error for r in result.records]
    check_visits(executor.schedule.visits, 2, dict.fromkeys((r.tid for r in result.records), 2))
    # No row of the DataFrame went through the driver's channel; each worker stacked its own slot's rows.
    traffic = executor.traffic
    assert traffic.partition_bytes == {} and traffic.partitions_sent == 2
    plan: Any = make_plan(search.objective.body, options, {"df": df}, 2)
    assert traffic.partition_rows == dict(enumerate(plan.slot_rows))
    held = len(plan.validation["label"])  # validation_split=0.2 holds out a fifth of the rows, by hash
    assert sum(plan.slot_rows) + held == 2000 and 300 < held < 500
    assert min(plan.slot_rows) > 0.4 * sum(plan.slot_rows)
    for record in result.records:
        assert [step for step, _ in record.curve] == [1, 2]
        assert record.value == pytest.approx(record.curve[-1][1]["val_accuracy"])
    assert result.best_value > 0.9


@pytest.mark.spark
def test_ml_vectors_train_as_arrays_and_validation_data_can_come_from_the_notebook(local_spark):
    from pyspark.ml.feature import VectorAssembler

    data = synthetic(2400)
    names = [f"f{i}" for i in range(8)]
    import pandas as pd

    frame = pd.DataFrame(data["x_train"][:2000], columns=names).assign(label=data["y_train"][:2000])
    df = VectorAssembler(inputCols=names, outputCol="features").transform(local_spark.createDataFrame(frame))
    cell = FRAME_CELL.replace("validation_split=0.2", "validation_data=(x_val, y_val)")
    namespace = {"df": df, "EPOCHS": 2, "x_val": data["x_train"][2000:], "y_val": data["y_train"][2000:]}
    result = run_search(parse_cell(cell, 1), hopper_options(data="df", max_evals=2, seed=1), namespace)
    assert [r.status for r in result.records] == ["ok"] * 2, [r.error for r in result.records]
    assert result.best_value > 0.85


@pytest.mark.spark
@pytest.mark.parametrize(
    ("cell", "frame", "message"),
    [
        (CELL, None, r"--data df is a Spark DataFrame: train on its columns, e\.g\. model\.fit\(df\['features'\]"),
        (FRAME_CELL.replace('df["label"]', "y_train"), None, r"model\.fit's y must be a column of --data df"),
        (
            FRAME_CELL.replace('"features"', '"pixels"'),
            None,
            "reads df\\['pixels'\\], which is not a column of --data df",
        ),
        (FRAME_CELL, "text", "column 'features' of --data df is string: the hopper trains on numbers, arrays"),
        (FRAME_CELL, "tiny", "--data df has 1 training rows, fewer than the 2 Spark slots"),
    ],
)
def test_a_dataframe_the_hopper_cannot_train_on(local_spark, cell, frame, message):
    df = synthetic_frame(local_spark)
    if frame == "text":
        df = df.selectExpr("cast(features as string) as features", "label")
    elif frame == "tiny":
        df = df.limit(1)
    with pytest.raises(TuneUsageError, match=message) as caught:
        run_search(parse_cell(cell, 1), hopper_options(data="df"), {"df": df, "EPOCHS": 1, "y_train": np.zeros(3)})
    assert "\n" not in str(caught.value)


def test_a_column_of_arrays_named_in_data():
    with pytest.raises(TuneUsageError, match=r"model\.fit reads df\['features'\]: with --data naming arrays"):
        make_plan(parse_cell(FRAME_CELL).body, hopper_options(data="df"), {"df": np.zeros((10, 8))}, 2)


@pytest.mark.spark
def test_rows_that_do_not_stack_into_arrays_stop_the_search_with_one_line(local_spark):
    df = synthetic_frame(local_spark, ragged=True)
    with pytest.raises(SearchFailed, match="the rows of --data df do not load on the workers: ValueError: column"):
        run_search(parse_cell(FRAME_CELL, 1), hopper_options(data="df", max_evals=2), {"df": df, "EPOCHS": 1})


def test_arrow_columns_become_arrays_with_one_row_per_dataframe_row():
    import pyarrow as pa

    from nbtune.hopper._resident import to_arrays

    images = pa.array([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]], [[0.0, 0.0], [0.0, 1.0]]])
    batches = pa.table({"image": images, "label": pa.array([1, 0, 1], pa.int32())}).to_batches(max_chunksize=2)
    arrays = to_arrays(batches, ["image", "label"])
    assert arrays["image"].shape == (3, 2, 2) and arrays["image"][1, 1, 0] == 7.0
    assert arrays["label"].tolist() == [1, 0, 1] and arrays["label"].dtype == np.int32
    with pytest.raises(ValueError, match="column 'x' of --data has 1 missing values"):
        to_arrays(pa.table({"x": pa.array([1.0, None])}).to_batches(), ["x"])
    with pytest.raises(ValueError, match="no rows of --data reached this worker"):
        to_arrays([], ["x"])


# -- Keras callbacks during hops: epoch hooks where the epoch begins and ends, state that travels ---------

CALLBACKS_CELL = CELL.replace(
    "verbose=0)",
    "callbacks=CALLBACKS, verbose=0)\nlearning_rates = history.history['learning_rate']",
)


@pytest.mark.spark
def test_epoch_callbacks_run_at_epoch_boundaries_with_their_state_carried_between_workers(local_spark, tmp_path):
    # ReduceLROnPlateau never sees an improvement of 1.0: it halves the rate after every epoch from the second
    # on, as Keras' own fit does. That needs its counters and the optimizer's rate to follow the model from
    # worker to worker: each worker holds its own copy of the model and its callbacks.
    # Stop ends training after the fourth epoch of six; CSVLogger holds an open file and cannot move.
    cell = CALLBACKS_CELL.replace(
        "CALLBACKS",
        "[keras.callbacks.ReduceLROnPlateau(monitor='val_accuracy', factor=0.5, patience=1, min_delta=1.0), "
        f"keras.callbacks.CSVLogger({str(tmp_path / 'log.csv')!r}), Stop(), "
        "keras.callbacks.ModelCheckpoint(CHECKPOINTS + f'/lr{lr:.6f}-' + 'epoch{epoch}.keras')]",
    )
    cell = cell.replace(
        "model = keras.Sequential",
        "class Stop(keras.callbacks.Callback):\n"
        "    def on_epoch_end(self, epoch, logs=None):\n"
        "        self.model.stop_training = epoch == 3\n"
        "model = keras.Sequential",
    )
    options = hopper_options(max_evals=2, seed=2, log_metrics=("epochs_run",))
    cell += "epochs_run = len(learning_rates)\n"
    result = run_search(parse_cell(cell, 1), options, {**synthetic(), "EPOCHS": 6, "CHECKPOINTS": str(tmp_path)})
    assert [r.status for r in result.records] == ["ok"] * 2, [r.error for r in result.records]
    for record in result.records:
        lr = record.params["lr"]
        rates = [logs["learning_rate"] for _, logs in record.curve]
        assert rates == pytest.approx([lr, lr, lr / 2, lr / 4], rel=1e-5)
        assert record.log_metrics["epochs_run"] == 4
        assert "CSVLogger cannot move between workers with its model" in record.output
        saved = sorted(p.name for p in tmp_path.glob(f"lr{lr:.6f}-*"))
        assert saved == [f"lr{lr:.6f}-epoch{e}.keras" for e in (1, 2, 3, 4)]  # written where each epoch ended


@pytest.mark.spark
def test_a_learning_rate_schedule_sets_each_epochs_rate_where_the_epoch_begins(local_spark):
    cell = CALLBACKS_CELL.replace(
        "CALLBACKS", "[keras.callbacks.LearningRateScheduler(lambda epoch, rate: 0.03 / (epoch + 1))]"
    )
    (record,) = run_search(
        parse_cell(cell, 1), hopper_options(max_evals=1, seed=4), {**synthetic(), "EPOCHS": 3}
    ).records
    assert record.status == "ok", record.error
    assert [logs["learning_rate"] for _, logs in record.curve] == pytest.approx([0.03, 0.015, 0.01], rel=1e-5)
