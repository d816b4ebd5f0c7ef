"""Keras reports on its own: while a trial runs, every `model.fit` reports each epoch's logs.

`Model.fit` is wrapped once per process, when Keras is (or gets) imported; outside a trial, or with
`--no-autoreport`, the wrapper only calls the original. A prune decision sets `model.stop_training`,
so the fit ends after that epoch and callbacks such as EarlyStopping still run their `on_train_end`.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from nbtune.trial._after_import import PatchOnce
from nbtune.trial._report import current


def _patch(keras: ModuleType) -> None:
    model: Any = keras.Model
    original = model.fit

    class _Report(keras.callbacks.Callback):  # type: ignore[misc,name-defined]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            reports = current()
            # The last epoch (of `epochs`, or EarlyStopping's): the trial is complete, nothing left to prune.
            last = epoch + 1 >= int(self.params.get("epochs") or 0) or bool(self.model.stop_training)
            if reports is not None and logs and reports.add(None, dict(logs), final=last):
                self.model.stop_training = True

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        reports = current()
        if reports is not None and reports.autoreport:
            kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), _Report()]
        return original(self, *args, **kwargs)

    model.fit = fit


_fit = PatchOnce("keras", _patch, ready="Model")
watch = _fit.watch  # wrap Keras' `Model.fit` now if Keras is loaded, else as soon as it is imported
