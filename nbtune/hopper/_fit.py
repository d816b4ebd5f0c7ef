"""Keras' `fit` inside the hopper: the cell's own call is caught (to build a model) or answered (to finish it).

`Model.fit` is wrapped once per worker process, the first time a cell runs here; outside
`handled(...)` the wrapper only calls the original, which is how the hops themselves train.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import sys
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

Handler = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]  # (model, args, kwargs) -> what fit returns

# keras.Model.fit's parameters in order, to read a call's positional arguments by name.
FIT_PARAMS = (
    "x",
    "y",
    "batch_size",
    "epochs",
    "verbose",
    "callbacks",
    "validation_split",
    "validation_data",
    "shuffle",
)

_handler: ContextVar[Handler | None] = ContextVar("nbtune_hopper_fit", default=None)
_lock = threading.Lock()
_patched = False


class FitReached(BaseException):
    """The cell called `model.fit`: the model and the call, caught instead of training.

    A BaseException, so a cell's `except Exception` does not swallow it.
    """

    def __init__(self, model: Any, kwargs: dict[str, Any]) -> None:
        super().__init__("model.fit reached")
        self.model, self.kwargs = model, kwargs


@dataclass(frozen=True)
class StopRule:
    """Keras' EarlyStopping, applied by the driver at epoch boundaries."""

    monitor: str
    mode: str  # "min" or "max"
    min_delta: float
    patience: int
    baseline: float | None
    restore_best: bool


def fit_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """A fit call's arguments by name (positional ones named as Keras names them)."""
    return {**dict(zip(FIT_PARAMS, args, strict=False)), **kwargs}


def catch_fit(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The build's handler: stop the cell at its fit call, keeping the model and the call."""
    raise FitReached(model, fit_arguments(args, kwargs))


@contextlib.contextmanager
def handled(handler: Handler) -> Iterator[None]:
    """Within this block (on this thread), `model.fit` calls `handler` instead of training."""
    watch()
    token = _handler.set(handler)
    try:
        yield
    finally:
        _handler.reset(token)


def stop_rule(callbacks: Any) -> StopRule | None:
    """The EarlyStopping among a fit call's callbacks, as a rule the driver can apply."""
    for callback in callbacks or ():
        if type(callback).__name__ != "EarlyStopping":
            continue
        monitor = str(getattr(callback, "monitor", "val_loss"))
        mode = str(getattr(callback, "mode", "auto"))
        if mode not in ("min", "max"):
            mode = "max" if "acc" in monitor or monitor.endswith(("auc", "precision", "recall")) else "min"
        baseline = getattr(callback, "baseline", None)
        return StopRule(
            monitor=monitor,
            mode=mode,
            min_delta=abs(float(getattr(callback, "min_delta", 0.0))),
            patience=int(getattr(callback, "patience", 0)),
            baseline=None if baseline is None else float(baseline),
            restore_best=bool(getattr(callback, "restore_best_weights", False)),
        )
    return None


def history(model: Any, logs: dict[str, list[float]], epochs: int) -> Any:
    """What `model.fit` returns: a Keras History holding the hopper's per-epoch logs."""
    keras = sys.modules["keras"]
    done = keras.callbacks.History()
    done.set_model(model)
    done.set_params({"verbose": 0, "epochs": epochs, "steps": None})
    done.history = {name: list(values) for name, values in logs.items()}
    done.epoch = list(range(len(next(iter(logs.values()), []))))
    model.history = done
    return done


def watch() -> None:
    """Wrap Keras' `Model.fit` once in this process (importing Keras: the cell is about to)."""
    global _patched
    if _patched:
        return
    # Imported here rather than hooked on import: trial/_keras hooks the same import, and one hook each.
    keras: Any = importlib.import_module("keras")
    with _lock:
        if _patched:
            return
        model: Any = keras.Model
        original = model.fit

        @functools.wraps(original)
        def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
            handler = _handler.get()
            if handler is None:
                return original(self, *args, **kwargs)
            return handler(self, args, kwargs)

        model.fit = fit
        _patched = True
