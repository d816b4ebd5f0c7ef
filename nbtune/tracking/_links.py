"""Links to MLflow run pages, and `%tune_mlflow_ui`: a local MLflow UI for the embedded store."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

ENV_UI_URL = "NBTUNE_MLFLOW_UI_URL"


@dataclass(frozen=True)
class RunLinks:
    """Turns (experiment id, run id) into a run-page URL for one tracking store; base None = no UI known."""

    base: str | None
    databricks: bool = False
    workspace_id: str | None = None

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """The run's page, or None when there is no UI to link to."""
        if self.base is None:
            return None
        if self.databricks:
            return f"{self.base}/ml/experiments/{experiment_id}/runs/{run_id}{self._org()}"
        return f"{self.base}/#/experiments/{experiment_id}/runs/{run_id}"

    def experiment_url(self, experiment_id: str) -> str | None:
        """The experiment's page, or None when there is no UI to link to."""
        if self.base is None:
            return None
        if self.databricks:
            return f"{self.base}/ml/experiments/{experiment_id}{self._org()}"
        return f"{self.base}/#/experiments/{experiment_id}"

    def _org(self) -> str:
        # Workspaces that share a host are told apart by `?o=<workspace id>`.
        return f"?o={self.workspace_id}" if self.workspace_id and self.workspace_id != "0" else ""


class LocalUI(Protocol):
    """An MLflow UI this process started for a local store (`%tune_mlflow_ui`)."""

    url: str

    def alive(self) -> bool:
        """Whether it still runs."""

    def stop(self) -> None:
        """Stop it."""


LOCAL_UIS: dict[str, LocalUI] = {}  # normalized store URI -> its UI; filled by tracking/_ui_server


def is_databricks_uri(uri: str) -> bool:
    """True for `databricks` and `databricks://profile` tracking URIs."""
    return uri == "databricks" or uri.startswith(("databricks:", "databricks-uc"))


def on_databricks() -> bool:
    """True inside a Databricks runtime (notebook or job)."""
    return "DATABRICKS_RUNTIME_VERSION" in os.environ


def normalize_store_uri(uri: str) -> str:
    """A local store's URI with an absolute path, so two spellings of one store compare equal."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str(Path(uri[len("sqlite:///") :]).resolve())
    if "://" not in uri and not is_databricks_uri(uri):
        return Path(uri).resolve().as_uri()
    return uri


def links_for(
    tracking_uri: str,
    configured: str | None = None,
    databricks_workspace: tuple[str | None, str | None] | None = None,
) -> RunLinks:
    """The link style for a tracking URI: configured UI, the server itself, Databricks, or a `%tune_mlflow_ui`."""
    base = configured or os.environ.get(ENV_UI_URL) or None
    if is_databricks_uri(tracking_uri):
        # Databricks cannot run here: this branch is covered by unit tests of the URL form only.
        host, workspace_id = databricks_workspace or _databricks_workspace(tracking_uri)
        base = base or host
        return RunLinks(base.rstrip("/") if base else None, databricks=True, workspace_id=workspace_id)
    if base:
        return RunLinks(base.rstrip("/"))
    if tracking_uri.startswith(("http://", "https://")):
        return RunLinks(tracking_uri.rstrip("/"))  # a tracking server serves its UI at the same address
    ui = LOCAL_UIS.get(normalize_store_uri(tracking_uri))
    return RunLinks(ui.url if ui is not None and ui.alive() else None)


def _databricks_workspace(tracking_uri: str) -> tuple[str | None, str | None]:
    """(workspace URL, workspace id) as MLflow finds them on Databricks; (None, None) elsewhere."""
    try:
        from mlflow.utils import databricks_utils as dbu

        info = dbu.DatabricksWorkspaceInfo.from_environment() or dbu.get_databricks_workspace_info_from_uri(
            tracking_uri
        )
        if info is not None and info.host:
            host = info.host if info.host.startswith("http") else f"https://{info.host}"
            return host, info.workspace_id
        host = dbu.get_workspace_url()  # type: ignore[no-untyped-call]
    except Exception:  # any failure only costs the links, never the search
        host = None
    env_host = os.environ.get("DATABRICKS_HOST")
    if host is None and env_host:
        host = env_host if env_host.startswith("http") else f"https://{env_host}"
    return host, None
