"""The result of a search per group: `_tune.groups`, `_tune.best_params` by key, every trial with its keys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nbtune._result import TuneResult
from nbtune._text import fmt

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class GroupOutcome:
    """One group's search as the driver keeps it."""

    key: tuple[Any, ...]
    rows: int
    status: str = "pending"  # pending, running, ok, failed, cancelled
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    duration: float = 0.0
    error: str | None = None
    traceback: str | None = None
    host: str = ""
    run_id: str | None = None
    mlflow_url: str | None = None
    model: bytes | None = field(default=None, repr=False)  # --log-model: zipped until MLflow has it
    model_error: str | None = None
    model_uri: str | None = None

    def finish(self, row: dict[str, Any]) -> None:
        """Take in the row the group's task sent."""
        self.status = str(row["status"])
        self.best_value = _number(row.get("best_value"))
        self.best_params = json.loads(row["best_params"]) if row.get("best_params") else {}
        self.trials = json.loads(row["records"]) if row.get("records") else []
        self.failed = int(row.get("failed") or 0)
        self.duration = float(row.get("duration") or 0.0)
        self.error, self.traceback = row.get("error"), row.get("traceback")
        self.host = str(row.get("host") or "")
        self.model, self.model_error = row.get("model") or self.model, row.get("model_error")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if number != number else number  # a NaN from Spark means "no value"


@dataclass(repr=False)
class GroupsResult(TuneResult):
    """What `%%tune --by KEY --data DF` binds to `_tune`: one search per group."""

    keys: list[str] = field(default_factory=list)
    outcomes: list[GroupOutcome] = field(default_factory=list)
    router_model_uri: str | None = None  # --log-model: the pyfunc model that routes rows to their group's model

    @property
    def best_model_uri(self) -> str | None:
        """With --log-model: one model for every group, which sends each row to its group's best model."""
        return self.router_model_uri

    def _label(self, key: tuple[Any, ...]) -> Any:
        return key[0] if len(self.keys) == 1 else key

    def _ordered(self) -> list[GroupOutcome]:
        """The groups in the order of their keys (nulls last; by text if the keys do not compare)."""
        try:
            return sorted(self.outcomes, key=lambda g: tuple((v is None, v) for v in g.key))
        except TypeError:
            return sorted(self.outcomes, key=lambda g: repr(g.key))

    @property
    def groups(self) -> pd.DataFrame:
        """One row a group: keys, status, best value, one column per parameter, trials, duration, error, run."""
        import pandas as pd

        columns = [*self.keys, "status", self.metric, *self.param_names, "trials", "failed", "rows", "duration"]
        columns += ["error", "run_id", "mlflow_url", "model_uri"]
        rows = [
            {
                **dict(zip(self.keys, g.key, strict=True)),
                "status": g.status,
                self.metric: g.best_value,
                **{p: g.best_params.get(p) for p in self.param_names},
                "trials": len(g.trials),
                "failed": g.failed,
                "rows": g.rows,
                "duration": g.duration,
                "error": g.error,
                "run_id": g.run_id,
                "mlflow_url": g.mlflow_url,
                "model_uri": g.model_uri,
            }
            for g in self._ordered()
        ]
        return pd.DataFrame(rows, columns=columns)

    @property
    def best_params(self) -> dict[Any, dict[str, Any]]:  # by group, not one search
        """Group key (a tuple with several key columns) -> its best parameters; failed groups left out."""
        return {self._label(g.key): dict(g.best_params) for g in self.outcomes if g.status == "ok"}

    @property
    def best_values(self) -> dict[Any, float | None]:
        """Group key -> its best metric value; failed groups left out."""
        return {self._label(g.key): g.best_value for g in self.outcomes if g.status == "ok"}

    def group_counts(self) -> dict[str, int]:
        """Number of groups by status."""
        out: dict[str, int] = {}
        for g in self.outcomes:
            out[g.status] = out.get(g.status, 0) + 1
        return out

    def counts(self) -> dict[str, int]:
        """Number of finished trials by status, over every group."""
        out = {"ok": 0, "pruned": 0, "failed": 0, "cancelled": 0}
        for g in self.outcomes:
            for t in g.trials:
                out[t["status"]] = out.get(t["status"], 0) + 1
        return out

    def to_pandas(self) -> pd.DataFrame:
        """One row a trial of every group: the group's keys, then the columns of a single search's table."""
        import pandas as pd

        columns = [*self.keys, "trial", "status", self.metric, "duration", *self.param_names, *self.log_metrics]
        columns.append("error")
        rows = [
            {
                **dict(zip(self.keys, g.key, strict=True)),
                "trial": t["trial"],
                "status": t["status"],
                self.metric: t["value"],
                "duration": t["duration"],
                **{p: t["params"].get(p) for p in self.param_names},
                **{m: t["log_metrics"].get(m) for m in self.log_metrics},
                "error": t["error"],
            }
            for g in self._ordered()
            for t in g.trials
        ]
        return pd.DataFrame(rows, columns=columns)

    def summary(self) -> str:
        """One line: groups by status, trials, time, and the spread of the best values."""
        c = self.group_counts()
        parts = [f"{c.get(s, 0)} {s}" for s in ("ok", "failed", "cancelled") if c.get(s)]
        head = f"{len(self.outcomes)} groups ({', '.join(parts) or 'none run'})"
        values = sorted(v for v in self.best_values.values() if v is not None)
        if values:
            middle, low, high = fmt(values[len(values) // 2]), fmt(values[0]), fmt(values[-1])
            head += f"; best {self.metric} median {middle} (range {low}..{high})"
        tail = f"{sum(len(g.trials) for g in self.outcomes)} trials, {self.wall_time:.1f} s"
        if self.stop_reason not in ("completed", "running"):
            tail += f", stopped: {self.stop_reason}"
        return f"{head}; {tail}"

    def __repr__(self) -> str:
        return f"<GroupsResult {self.summary()}>"
