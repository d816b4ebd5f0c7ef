"""Trials that report as they learn: nbtune.report, the schedulers, pruned trials, Keras' own reports."""

from __future__ import annotations

import warnings

import pytest
from helpers import run_tune

import nbtune
from nbtune import UsageError
from nbtune.search.schedulers._asha import ASHA, Hyperband
from nbtune.search.schedulers._median import Median

# Loss curves with a known ranking: a trial's final loss is x, and every trial has the same shape.
CURVES = """
x = 0.5  # tune: uniform(0, 1)
import nbtune
for step in range(1, 10):
    loss = x + 1.0 / step
    nbtune.report(loss=loss)
"""


# -- schedulers, alone ---------------------------------------------------------------------------


def test_asha_keeps_the_best_third_at_each_rung():
    asha = ASHA(min_steps=1, eta=3, max_steps=27)
    assert asha._bracket.rungs == [1, 3, 9]
    # Losses arrive at rung 1 one trial at a time: each is judged against those recorded so far.
    decisions = [asha.decide(tid, 1, loss) for tid, loss in enumerate([0.5, 0.9, 0.1, 0.8, 0.7, 0.2])]
    assert decisions == [False, True, False, True, True, False]
    assert asha.decide(0, 2, 0.4) is False  # between rungs: no decision
    assert asha.decide(0, 3, 0.4) is False  # first at rung 3


def test_asha_learns_the_budget_from_completed_trials():
    asha = ASHA(min_steps=1, eta=3)
    assert asha._bracket.rungs[:3] == [1, 3, 9]
    asha.finished(0, 9, completed=True)  # a full trial runs 9 steps: no rung at 9 or beyond
    assert asha._bracket.rungs == [1, 3]
    asha.finished(1, 4, completed=False)  # a pruned trial says nothing about the budget
    assert asha._bracket.rungs == [1, 3]


def test_hyperband_deals_trials_to_brackets_with_longer_grace_periods():
    hb = Hyperband(min_steps=1, eta=3, max_steps=27)
    # Grace periods 1, 3, 9; the last bracket runs every trial to the budget (plain random search).
    assert [b.rungs[:1] for b in hb._brackets] == [[1], [3], [9], []]
    # Dealt as Ray deals: a softmax over the rung counts (3, 2, 1, 0) gives 64%, 24%, 9% and 3%.
    for tid in range(100):
        hb.decide(tid, 1, 1.0)
    shares = [sum(hb._of[t] is b for t in range(100)) for b in hb._brackets]
    assert shares == [64, 24, 9, 3]


def test_median_prunes_below_the_median_of_others_at_the_same_step():
    median = Median(min_steps=2)
    for tid, loss in enumerate([0.1, 0.2, 0.3]):
        assert median.decide(tid, 1, loss) is False
        assert median.decide(tid, 2, loss) is False  # fewer than 3 others so far
    assert median.decide(3, 1, 0.9) is False  # before --min-steps
    assert median.decide(3, 2, 0.9) is True  # worse than the others' median (0.2) at step 2
    assert median.decide(4, 2, 0.15) is False


# -- searches ------------------------------------------------------------------------------------


def test_asha_prunes_the_hopeless_and_keeps_the_best(ip):
    result = run_tune(ip, "--max-evals 30 --prune asha --seed 1 --quiet", CURVES)
    counts = result.counts()
    assert counts["pruned"] >= 5 and counts["ok"] >= 5
    pruned = [r for r in result.records if r.status == "pruned"]
    assert all(r.step < 9 for r in pruned[:3])  # the first prunes happen at early rungs
    # A pruned trial's value is the best it reported; the winner ran to the end.
    for r in pruned:
        assert r.value == pytest.approx(min(m["loss"] for _, m in r.curve))
    best = result.best_trial
    assert best.status == "ok" and best.step == 9
    assert best.value == pytest.approx(min(r.params["x"] for r in result.records) + 1 / 9)
    # hyperopt learns pruned trials as done with their value, so TPE avoids their region.
    docs = {d["tid"]: d for d in result.trials.trials}
    assert all(docs[r.tid]["result"]["loss"] == pytest.approx(r.value) for r in pruned)


def test_curves_and_the_step_column(ip):
    result = run_tune(ip, "--max-evals 6 --prune median --seed 0 --quiet", CURVES)
    curves = result.curves()
    assert list(curves.columns) == ["trial", "step", "metric", "value"]
    first = curves[curves.trial == 0]
    assert list(first.step) == list(range(1, 10)) and set(first.metric) == {"loss"}
    assert list(result.to_pandas()["step"]) == [r.step for r in sorted(result.records, key=lambda r: r.number)]


def test_without_prune_every_trial_runs_to_the_end_and_still_has_its_curve(ip):
    result = run_tune(ip, "--max-evals 4 --seed 0 --quiet", CURVES)
    assert result.counts()["ok"] == 4
    assert all(len(r.curve) == 9 for r in result.records)


def test_steps_count_from_one_or_are_given(ip):
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport nbtune\nnbtune.report(loss=1.0)\nnbtune.report(step=10, loss=0.5)\n"
    cell += "nbtune.report(loss=0.4)\nloss = x\n"
    result = run_tune(ip, "--max-evals 1 --quiet", cell)
    assert [s for s, _ in result.records[0].curve] == [1, 10, 11]


def test_the_same_cell_runs_without_tune(ip):
    assert ip.run_cell(CURVES.replace("# tune: uniform(0, 1)", "")).success
    assert ip.user_ns["loss"] == pytest.approx(0.5 + 1 / 9)
    nbtune.report(loss=1.0)  # outside a search: nothing happens


def test_report_needs_a_metric():
    with pytest.raises(TypeError, match=r"nbtune.report\(val_loss=val_loss\)"):
        nbtune.report()


def test_a_non_numeric_report_is_skipped_with_one_warning_and_the_trial_goes_on(ip):
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport nbtune\nfor s in range(3):\n"
    cell += "    nbtune.report(loss=float('nan'), note='text', acc=s)\nloss = x\n"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_tune(ip, "--max-evals 1 --quiet", cell)
    assert result.records[0].status == "ok"
    assert [m for _, m in result.records[0].curve] == [{"acc": 0.0}, {"acc": 1.0}, {"acc": 2.0}]
    assert sum("not a finite number" in str(w.message) for w in caught) == 1


def test_prune_warns_once_when_no_report_carries_the_metric(ip):
    cell = "x = 0.5  # tune: uniform(0, 1)\nimport nbtune\nnbtune.report(acc=x)\nloss = x\n"
    with pytest.warns(RuntimeWarning, match=r"no report carried the metric 'loss' \(they carried acc\)"):
        run_tune(ip, "--max-evals 3 --prune asha --quiet", cell)


def test_prune_warns_when_nothing_reports(ip):
    with pytest.warns(RuntimeWarning, match="--prune had no reports"):
        run_tune(ip, "--max-evals 2 --prune median --quiet", "x = 0.5  # tune: uniform(0, 1)\nloss = x\n")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ("--prune bogus", r"--prune must be one of none, median, asha, hyperband, got 'bogus'"),
        ("--min-steps 0", r"--min-steps must be a positive integer, got 0"),
        ("--reduction-factor 1", r"--reduction-factor must be a number above 1, got 1.0"),
        ("--reduction-factor x", r"--reduction-factor: expected a number, got 'x'"),
        ("--min-steps 5 --max-steps 3", r"--max-steps 3 is below --min-steps 5"),
        ("--prune asha --backend sparktrials", r"--prune needs reports from running trials"),
    ],
)
def test_bad_pruning_flags_are_one_line_usage_errors(ip, flags, message):
    with pytest.raises(UsageError, match=message) as info:
        run_tune(ip, f"{flags} --quiet", CURVES)
    assert "\n" not in str(info.value)


# -- Keras reports on its own --------------------------------------------------------------------

KERAS = """
lr = 0.01  # tune: loguniform(1e-4, 1e-1)
import numpy as np
import keras
rng = np.random.default_rng(0)
x = rng.normal(size=(256, 4)).astype("float32")
y = (x.sum(axis=1) > 0).astype("float32")
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
model.compile(optimizer=keras.optimizers.SGD(lr), loss="binary_crossentropy")
stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=50, restore_best_weights=True)
history = model.fit(x, y, epochs=9, batch_size=64, validation_split=0.25, callbacks=[stop], verbose=0)
val_loss = min(history.history["val_loss"])
"""


def test_keras_fit_reports_every_epoch_and_a_prune_stops_the_fit(ip):
    result = run_tune(ip, "--max-evals 8 --metric val_loss --prune asha --seed 3 --quiet", KERAS)
    for r in result.records:
        assert [s for s, _ in r.curve] == list(range(1, len(r.curve) + 1))
        assert {"loss", "val_loss"} <= set(r.curve[0][1])
    ok = [r for r in result.records if r.status == "ok"]
    pruned = [r for r in result.records if r.status == "pruned"]
    assert ok and all(len(r.curve) == 9 for r in ok)
    assert pruned and all(len(r.curve) < 9 for r in pruned)  # the fit stopped at the prune


def test_no_autoreport_leaves_keras_alone(ip):
    result = run_tune(ip, "--max-evals 2 --metric val_loss --no-autoreport --seed 3 --quiet", KERAS)
    assert all(r.curve == [] and r.status == "ok" for r in result.records)


def test_a_trials_last_report_never_prunes_it():
    """At its last epoch a trial is complete: a prune answer then saves nothing and would hide its result."""
    from nbtune.trial._report import TrialReports

    reports = TrialReports(send=lambda step, metrics: True, metric="loss", mode="min")
    assert not reports.add(None, {"loss": 0.5}, final=True) and not reports.pruned
    assert reports.add(None, {"loss": 0.4}) and reports.pruned  # an earlier step: pruned
