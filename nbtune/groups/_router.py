"""--log-model with --by: one MLflow pyfunc model that sends each row to its group's best model.

Many models then deploy as one: `mlflow.pyfunc.load_model(_tune.best_model_uri).predict(rows)` takes
rows with the key columns and the features, and answers each row with its own group's model. The
model's code is `router_model.py`, saved into the model, so loading it needs MLflow but not nbtune.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

_INDEX = "groups.json"  # as router_model.INDEX (that module is only loaded by MLflow)


def save_router(path: str, keys: Sequence[str], groups: Sequence[tuple[Sequence[Any], str]], models: str) -> None:
    """Save the router as an MLflow pyfunc model at `path`; `models` holds each group's model directory."""
    with open(os.path.join(models, _INDEX), "w", encoding="utf-8") as index:
        json.dump({"keys": list(keys), "groups": [[list(values), sub] for values, sub in groups]}, index, default=str)
    import mlflow.pyfunc

    mlflow.pyfunc.save_model(
        path,
        python_model=os.path.join(os.path.dirname(__file__), "router_model.py"),
        artifacts={"groups": models},
        pip_requirements=["mlflow", "pandas", "numpy"],  # given, so MLflow does not reload the model to infer them
    )
