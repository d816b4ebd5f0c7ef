"""The result of a search: best parameters and value, every trial, a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune.trial._records import TrialRecord

if TYPE_CHECKING:
    import pandas as pd
    from hyperopt import Trials

    from nbtune.analysis._views import ResultPlots


def _new_trials() -> Trials:
    from hyperopt import Trials  # not at import time: hyperopt takes 2 s to import

    return Trials()


@dataclass
class TuneResult:
    """What `%%tune` binds to `_tune` (or `--out`) and returns as the cell's value."""

    metric: str
    mode: str
    param_names: list[str]
    log_metrics: tuple[str, ...] = ()
    trials: Trials = field(default_factory=_new_trials)
    records: list[TrialRecord] = field(default_factory=list)
    backend: str = "local"
    parallelism: int = 1
    max_evals: int = 0
    stop_reason: str = "running"  # completed, timeout, early-stop, max-failures, cancelled, interrupted, error
    wall_time: float = 0.0
    parent_run_id: str | None = None
    parent_url: str | None = None
    dashboard: Any = None
    _best: tuple[list[TrialRecord] | None, int, TrialRecord | None] = field(
        default=(None, 0, None), init=False, repr=False, compare=False
    )
    best_model: Any = field(default=None, repr=False)  # --backend driver: the best trial's `model`, in memory

    @property
    def best_trial(self) -> TrialRecord | None:
        """The ok trial with the best metric, or None if no trial succeeded."""
        # Records are only appended: look at the new ones since the last call (the dashboard and the
        # stop rules ask after every trial, so a 10,000-trial search stays linear).
        records = self.records
        of, seen, best = self._best
        if of is not records or seen > len(records):
            seen, best = 0, None
        sign = 1.0 if self.mode == "min" else -1.0
        for r in records[seen:] if seen else records:
            if r.status != "ok" or r.value is None:
                continue
            if best is None or (sign * r.value, r.number) < (sign * (best.value or 0.0), best.number):
                best = r
        self._best = (records, len(records), best)
        return best

    @property
    def best_params(self) -> dict[str, Any]:
        """Parameter name -> value of the best trial (choices as the chosen value)."""
        best = self.best_trial
        return dict(best.params) if best else {}

    @property
    def best_value(self) -> float | None:
        """The metric of the best trial, in the metric's own sign."""
        best = self.best_trial
        return best.value if best else None

    @property
    def best_model_uri(self) -> str | None:
        """With --log-model (all or best), where the best trial's model is: `mlflow.pyfunc.load_model(uri)` loads it."""
        best = self.best_trial
        return best.model_uri if best else None

    def counts(self) -> dict[str, int]:
        """Number of finished trials by status."""
        out = {"ok": 0, "pruned": 0, "failed": 0, "cancelled": 0}
        for r in self.records:
            out[r.status] += 1
        return out

    def to_pandas(self) -> pd.DataFrame:
        """One row a trial: number, status, metric, duration, step, parameters, logged metrics, error, MLflow run."""
        import pandas as pd

        columns = [
            "trial",
            "status",
            self.metric,
            "duration",
            "step",
            *self.param_names,
            *self.log_metrics,
            "error",
            "run_id",
            "mlflow_url",
        ]
        rows = [
            {
                "trial": r.number,
                "status": r.status,
                self.metric: r.value,
                "duration": r.duration,
                "step": r.step,
                **{p: r.params.get(p) for p in self.param_names},
                **{m: r.log_metrics.get(m) for m in self.log_metrics},
                "error": r.error,
                "run_id": r.mlflow_run_id,  # there even without a UI to link to (a local store)
                "mlflow_url": r.mlflow_url,
            }
            for r in sorted(self.records, key=lambda r: r.number)
        ]
        return pd.DataFrame(rows, columns=columns)

    def importance(self) -> pd.DataFrame:
        """Each parameter's share of the metric's variation (a random forest's permutation importance).

        Needs a few finished trials first (at least 8, and 2 per parameter): with fewer, any parameter
        seems to explain the spread. `_tune.plot.importance()` draws it.
        """
        from nbtune.analysis._importance import importance

        return importance(self.records, self.param_names, self.metric)

    @property
    def plot(self) -> ResultPlots:
        """The search's figures: `parallel_coordinates()`, `importance()`, `history()`, `durations()`."""
        from nbtune.analysis._views import ResultPlots

        return ResultPlots(self)

    def curves(self) -> pd.DataFrame:
        """One row per report of every trial: trial, step, metric, value (for plots and analysis)."""
        import pandas as pd

        rows = [
            {"trial": r.number, "step": step, "metric": name, "value": value}
            for r in sorted(self.records, key=lambda r: r.number)
            for step, metrics in r.curve
            for name, value in metrics.items()
        ]
        return pd.DataFrame(rows, columns=["trial", "step", "metric", "value"])

    def summary(self) -> str:
        """One line: best value and parameters, trial counts, time."""
        c = self.counts()
        parts = [f"{len(self.records)} trials ({c['ok']} ok"]
        parts[0] += f", {c['pruned']} pruned" if c["pruned"] else ""
        parts[0] += f", {c['failed']} failed" if c["failed"] else ""
        parts[0] += f", {c['cancelled']} cancelled" if c["cancelled"] else ""
        parts[0] += ")"
        parts.append(f"{self.wall_time:.1f} s")
        if self.stop_reason not in ("completed", "running"):
            parts.append(f"stopped: {self.stop_reason}")
        if self.best_trial is None:
            head = f"no successful trial for '{self.metric}'"
        else:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in self.best_params.items())
            head = f"best {self.metric}={_fmt(self.best_value)} ({self.mode}) with {shown}"
        return f"{head}; " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"<TuneResult {self.summary()}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return repr(value)
