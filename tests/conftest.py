"""Shared fixtures: a real IPython shell with nbtune loaded."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Defined once here, not imported per module: a session fixture imported into two modules is two
# fixtures, and two Playwright instances cannot run in one thread.
from browser import chromium_fixture, jupyterlab_server_fixture, page_fixture  # noqa: F401
from IPython.core.interactiveshell import InteractiveShell


@pytest.fixture(scope="session")
def _shell() -> InteractiveShell:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "nbtune")
    # MLflow costs seconds per search (import, a new sqlite store per temp dir); tests/test_tracking.py and
    # tests/test_resume.py turn it on where it is the subject.
    shell.run_line_magic("config", "TuneMagic.mlflow = False")
    # `auto` starts Spark; only the Spark tests (tests/test_spark*.py) ask for it.
    shell.run_line_magic("config", "TuneMagic.backend = 'local'")
    return shell


@pytest.fixture(autouse=True)
def _private_mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any MLflow a test starts writes under its own temp dir, never the checkout's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


@pytest.fixture(autouse=True)
def _no_keep_alive_across_tests() -> Iterator[None]:
    """End every keep-alive a test's searches started: its rounds would share the cores with later tests."""
    yield
    keepwarm = sys.modules.get("nbtune.spark._keepwarm")
    for keeper in list(getattr(keepwarm, "_keepers", {}).values()):
        if keeper.running:
            keeper.search_started()  # as a search would: pause, and end the thread with 0 minutes
            keeper.search_ended(0, 1)


@pytest.fixture
def ip(_shell: InteractiveShell, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    """A clean namespace, default %config and a temp working directory for each test."""
    monkeypatch.chdir(tmp_path)
    _shell.reset(new_session=False)
    magic = _shell.magics_manager.registry["TuneMagic"]
    saved = {name: getattr(magic, name) for name in magic.trait_names() if magic.trait_metadata(name, "config")}
    yield _shell
    for name, value in saved.items():
        setattr(magic, name, value)
