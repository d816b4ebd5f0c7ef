"""The router model's code, saved into the model itself (MLflow's models from code): it loads without nbtune.

`--log-model` with `--by` logs it: `predict` takes rows with the key columns and the features and answers
each row with its own group's best model. Imports only what every MLflow pyfunc environment has.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import mlflow.models
import mlflow.pyfunc
import numpy as np
import pandas as pd

INDEX = "groups.json"  # in the router's artifact: the key columns and each group's model directory


class GroupRouter(mlflow.pyfunc.PythonModel):  # type: ignore[name-defined,misc]
    """Dispatches rows to their group's model by the key columns (which the group's model does not see)."""

    def load_context(self, context: Any) -> None:
        """Read which directory holds each group's model; the models load when first asked for."""
        self._root = context.artifacts["groups"]
        with open(os.path.join(self._root, INDEX), encoding="utf-8") as index:
            saved = json.load(index)
        self.keys: list[str] = saved["keys"]
        self._paths = {_key(values): path for values, path in saved["groups"]}
        self._loaded: dict[tuple[Any, ...], Any] = {}

    # A DataFrame hint is one MLflow infers no input schema from (rows of any columns pass), and without a
    # hint MLflow warns at every load.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.Series:
        """One prediction per row, in the rows' order; NaN (and one warning) for a key with no model."""
        missing = [k for k in self.keys if k not in model_input.columns]
        if missing:
            raise ValueError(f"the rows need the key column(s) {', '.join(missing)} to find their group's model")
        out = pd.Series(np.nan, index=model_input.index, dtype=object)
        unknown = []
        for key, rows in model_input.groupby(self.keys, sort=False, dropna=False):
            group = _key(key if isinstance(key, tuple) else (key,))
            model = self._model(group)
            if model is None:
                unknown.append(group)
                continue
            predicted = np.asarray(model.predict(rows.drop(columns=self.keys)))
            out.loc[rows.index] = list(predicted) if predicted.ndim > 1 else predicted  # type: ignore[assignment]
        if unknown:
            warnings.warn(f"no model for group(s) {unknown[:5]}: their rows predict NaN", stacklevel=2)
        if all(np.ndim(v) == 0 for v in out):
            try:
                return out.astype(float)
            except (TypeError, ValueError):  # labels that are not numbers
                return out
        return out

    def _model(self, key: tuple[Any, ...]) -> Any:
        if key not in self._loaded:
            path = self._paths.get(key)
            self._loaded[key] = mlflow.pyfunc.load_model(os.path.join(self._root, path)) if path else None
        return self._loaded[key]


def _key(values: Sequence[Any]) -> tuple[Any, ...]:
    """A group's key as plain Python values, alike from JSON and from pandas (numpy scalars)."""
    return tuple(v.item() if hasattr(v, "item") else v for v in values)


mlflow.models.set_model(GroupRouter())
