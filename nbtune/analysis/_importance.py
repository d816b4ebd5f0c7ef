"""Which parameters mattered: permutation importance of a random forest fitted to the finished trials."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nbtune._text import is_finite_number
from nbtune.trial._records import TrialRecord

if TYPE_CHECKING:
    import pandas as pd

# Below this many finished trials per parameter (and this many in all) a forest fits noise: with 5
# trials and 3 parameters any parameter "explains" the spread. Optuna's evaluators ask for similar.
MIN_TRIALS = 8
PER_PARAM = 2


class NotEnoughTrials(ValueError):
    """Too few finished trials to tell which parameters matter."""


def min_trials(n_params: int) -> int:
    """Finished (ok) trials needed before importance means something."""
    return max(MIN_TRIALS, PER_PARAM * n_params)


def design(records: Sequence[TrialRecord], names: Sequence[str]) -> tuple[list[list[float]], list[float], list[str]]:
    """(rows of parameter values as numbers, the metric, the names) over the ok trials.

    Numbers stay numbers (trees do not care about scale, so log-uniform needs no log); anything else
    (strings, booleans, None, mixed) is a choice coded by its rank among the values seen, which a tree
    splits as well as it would a one-hot column, and keeps one column (one importance) per parameter.
    """
    ok = [r for r in records if r.status == "ok" and is_finite_number(r.value)]
    codes: dict[str, dict[str, int]] = {}
    for name in names:
        values = [r.params.get(name) for r in ok]
        if not all(is_finite_number(v) for v in values):
            codes[name] = {label: i for i, label in enumerate(sorted({repr(v) for v in values}))}
    rows = [[float(codes[n][repr(r.params.get(n))]) if n in codes else float(r.params[n]) for n in names] for r in ok]
    return rows, [float(r.value) for r in ok], list(names)  # type: ignore[arg-type]


def importance(records: Sequence[TrialRecord], names: Sequence[str], metric: str, seed: int = 0) -> pd.DataFrame:
    """One row per parameter: its share of the metric's explained variation (summing to 1), and its spread.

    A random forest predicts the metric from the parameters; shuffling one parameter's column and
    measuring how much worse the forest predicts (permutation importance) says how much the metric
    depends on it. Unlike the forest's own impurity importance, this does not favour parameters with
    many distinct values (continuous ones) over choices.
    """
    import pandas as pd
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.inspection import permutation_importance

    rows, ys, cols = design(records, names)
    need = min_trials(len(cols))
    if len(rows) < need:
        raise NotEnoughTrials(
            f"importance needs at least {need} finished trials for {len(cols)} parameter(s) "
            f"({len(rows)} so far): with fewer, a forest fits the noise of a few trials"
        )
    frame = pd.DataFrame(rows, columns=cols)
    forest: Any = RandomForestRegressor(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=1)
    forest.fit(frame, ys)
    found: Any = permutation_importance(forest, frame, ys, n_repeats=5, random_state=seed, n_jobs=1)
    means = [max(0.0, float(m)) for m in found.importances_mean]  # below 0: no better than noise
    total = sum(means) or 1.0
    out = pd.DataFrame(
        {
            "parameter": cols,
            "importance": [m / total for m in means],
            "std": [float(s) / total for s in found.importances_std],
        }
    )
    out.attrs["metric"], out.attrs["trials"] = metric, len(rows)
    return out.sort_values("importance", ascending=False, kind="stable").reset_index(drop=True)
