"""MLflow stores for tests: a fresh, already migrated sqlite store for each test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="module")
def migrated_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty mlflow.db with MLflow's tables (creating them takes seconds, copying the file does not)."""
    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def fresh_store(migrated_store: Path, tmp_path: Path) -> None:
    """A copy of the migrated store where conftest points MLFLOW_TRACKING_URI (tmp_path/mlflow.db)."""
    shutil.copy(migrated_store, tmp_path / "mlflow.db")
