"""--log-model: save a trial's `model` as an MLflow model in its own flavour, zipped to travel back.

Runs where the trial ran (a Spark worker, or the kernel); the driver logs the archive to the trial's
MLflow run, so workers never need access to the tracking store.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import os
import shutil
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from typing import Any

# The module prefixes of each flavour's model classes (a user's subclass has one in its MRO).
_FLAVOURS = (
    ("keras", ("keras.", "tf_keras.", "tensorflow.")),
    ("sklearn", ("sklearn.",)),
    ("spark", ("pyspark.ml.",)),  # fitted in the notebook's process: --backend driver
)


def flavour_of(model: Any) -> str:
    """The MLflow flavour for this model, or a TypeError naming what is supported."""
    for cls in type(model).__mro__:
        module = f"{cls.__module__}."
        for flavour, prefixes in _FLAVOURS:
            if module.startswith(prefixes):
                return flavour
    raise TypeError(
        f"--log-model saves Keras/TensorFlow and scikit-learn models; 'model' is a {type(model).__name__}"
        " (Spark ML models save on --backend driver)"
    )


def export_model(model: Any) -> bytes:
    """The model saved with its MLflow flavour (`save_model`), as a zip of the model directory."""
    name = flavour_of(model)
    flavour = importlib.import_module(f"mlflow.{name}")
    on_connect = _copy_on_disk() if name == "spark" and _on_spark_connect() else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as tmp, _quiet("mlflow"), _main_has_spec(), on_connect:
        path = os.path.join(tmp, "model")
        # Given requirements, MLflow skips inferring them (a subprocess that reloads the model: ~10 s).
        flavour.save_model(model, path, pip_requirements=flavour.get_default_pip_requirements())
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for root, _, files in os.walk(path):
                for name in files:
                    full = os.path.join(root, name)
                    archive.write(full, os.path.relpath(full, path))
    return buffer.getvalue()


def _on_spark_connect() -> bool:
    from pyspark.sql.utils import is_remote

    return bool(is_remote())


_COPYING = threading.Lock()  # the patch below is process-wide: trials on driver threads take turns


@contextlib.contextmanager
def _copy_on_disk() -> Iterator[None]:
    """On Spark Connect, mlflow.spark's copy of the saved model out of Hadoop's file system, made on disk.

    mlflow.spark has the server write the model (`model.save(tmp)`, which works on Connect) and then copies
    it through the JVM of classic Spark, which a Connect client has not got. On Databricks MLflow moves it
    through a Unity Catalog volume itself. Elsewhere a move on disk works when the directory the server
    saved in is one this process sees too: a server on this machine, or a shared MLFLOW_DFS_TMP.
    """
    from mlflow.spark import _HadoopFileSystem

    from nbtune.tracking._links import on_databricks

    if on_databricks():
        yield
        return

    def move(src: str, dst: str, remove_src: bool) -> None:
        local = src.removeprefix("file:")
        if not os.path.isdir(local):
            raise OSError(
                f"the Spark Connect server saved the model in {src} on its own disk, which this notebook"
                " cannot see; set MLFLOW_DFS_TMP to a directory both share"
            )
        (shutil.move if remove_src else shutil.copytree)(local, dst)

    with _COPYING:
        original = _HadoopFileSystem.__dict__["copy_to_local_file"]
        _HadoopFileSystem.copy_to_local_file = staticmethod(move)  # type: ignore[method-assign]
        try:
            yield
        finally:
            _HadoopFileSystem.copy_to_local_file = original  # type: ignore[method-assign]


@contextlib.contextmanager
def _main_has_spec() -> Iterator[None]:
    """`__main__.__spec__` while MLflow saves: IPython's `%reset` deletes it, and pyspark needs it.

    mlflow.spark imports `pyspark.ml.connect`, whose first import reads `__main__.__spec__`
    (pyspark.sql.connect.utils.check_dependencies): after a `%reset` that is an AttributeError. A fresh
    IPython namespace has `__spec__ = None`, so that is what it gets meanwhile.
    """
    main = sys.modules.get("__main__")
    missing = main is not None and not hasattr(main, "__spec__")
    if missing:
        main.__spec__ = None  # type: ignore[union-attr]
    try:
        yield
    finally:
        if missing and main is not None and main.__dict__.get("__spec__", 0) is None:
            del main.__spec__


def unpack_model(archive: bytes, into: str) -> None:
    """Unzip what export_model made into a directory (on the driver, to log it)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        zipped.extractall(into)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    # MLflow logs a warning per save (no signature given): noise in every trial's output.
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
