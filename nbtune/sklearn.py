"""Drop-in `GridSearchCV` and `RandomizedSearchCV` whose fits run on the warm pool (joblib backend "nbtune")."""

from __future__ import annotations

from typing import Any

import joblib  # type: ignore[import-untyped]
from sklearn import model_selection

from nbtune.pool._joblib import register

__all__ = ["GridSearchCV", "RandomizedSearchCV"]

register()


class GridSearchCV(model_selection.GridSearchCV):  # type: ignore[misc]
    """scikit-learn's GridSearchCV, fitting its candidates on Spark; `n_jobs=None` means every slot."""

    def fit(self, X: Any, y: Any = None, **params: Any) -> GridSearchCV:
        """Fit every candidate and fold on the pool (X and y go to each worker once)."""
        with joblib.parallel_backend("nbtune", n_jobs=-1):
            super().fit(X, y, **params)
        return self


class RandomizedSearchCV(model_selection.RandomizedSearchCV):  # type: ignore[misc]
    """scikit-learn's RandomizedSearchCV, fitting its candidates on Spark; `n_jobs=None` means every slot."""

    def fit(self, X: Any, y: Any = None, **params: Any) -> RandomizedSearchCV:
        """Fit every sampled candidate and fold on the pool (X and y go to each worker once)."""
        with joblib.parallel_backend("nbtune", n_jobs=-1):
            super().fit(X, y, **params)
        return self
