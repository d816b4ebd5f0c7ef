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
import tempfile
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
    if name == "spark" and _on_spark_connect():
        raise TypeError(
            "--log-model: MLflow's Spark flavour saves Spark ML models through the JVM of classic Spark, "
            "not on Spark Connect; save _tune.best_model with .save(path) instead"
        )
    flavour = importlib.import_module(f"mlflow.{name}")
    with tempfile.TemporaryDirectory() as tmp, _quiet("mlflow"):
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
    # pyspark.ml models look alike on both; on Connect mlflow.spark fails late, with "'NoneType' ... 'jvm'".
    from pyspark.sql.utils import is_remote

    return bool(is_remote())


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
