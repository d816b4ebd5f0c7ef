"""The fit call's Keras callbacks during hops: epoch hooks where an epoch begins and ends, state that hops.

A model's epoch spans several workers, each with its own copy of the callbacks (built with the
model). `on_epoch_begin` runs on the worker of the epoch's first sub-epoch, `on_epoch_end` (with
the whole epoch's logs) on the worker of its last; between hops the callbacks' attributes travel
with the model's weights, so a ReduceLROnPlateau counts epochs as it would in one process.
Batch hooks do not run during hops. EarlyStopping is not here: the driver applies it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cloudpickle

SKIP = ("EarlyStopping", "History", "ProgbarLogger")  # the driver applies the first; Keras adds the others


class EpochCallbacks:
    """One model's callbacks on this worker."""

    def __init__(self, callbacks: Iterable[Any] | None, model: Any, epochs: int) -> None:
        self._model = model
        self._all = {i: cb for i, cb in enumerate(callbacks or ()) if type(cb).__name__ not in SKIP}
        self.active: dict[int, Any] = {}
        for cb in self._all.values():
            cb.set_model(model)
            cb.set_params({"verbose": 0, "epochs": epochs, "steps": None})

    def restore(self, states: bytes) -> None:
        """Take up where the model's last hop left its callbacks (on this worker or another)."""
        saved: dict[int, dict[str, Any]] = cloudpickle.loads(states)
        self.active = {i: cb for i, cb in self._all.items() if i in saved}
        for i, cb in self.active.items():
            vars(cb).update(saved[i])

    def start(self) -> list[str]:
        """Begin training (the model's first hop, anywhere): `on_train_begin`; notes for the user."""
        notes = []
        for i, cb in self._all.items():
            cb.on_train_begin()
            try:
                cloudpickle.dumps(self._state(cb))
            except Exception as exc:  # e.g. CSVLogger's open file: it cannot follow the model
                notes.append(
                    f"nbtune --hopper: {type(cb).__name__} cannot move between workers with its model "
                    f"({type(exc).__name__}: {exc}); it does not run\n"
                )
                continue
            self.active[i] = cb
        return notes

    def begin(self, epoch: int) -> None:
        """`on_epoch_begin` of each callback (e.g. LearningRateScheduler sets this epoch's rate)."""
        for cb in self.active.values():
            cb.on_epoch_begin(epoch)

    def end(self, epoch: int, logs: dict[str, float]) -> bool:
        """`on_epoch_end` with the whole epoch's logs (callbacks may add to them); True if one stops training."""
        self._model.stop_training = False
        for cb in self.active.values():
            cb.on_epoch_end(epoch, logs)
        return bool(self._model.stop_training)

    def dump(self) -> bytes | None:
        """The callbacks' state, opaque to the driver (which need not import Keras to pass it on)."""
        if not self._all:
            return None
        return bytes(cloudpickle.dumps({i: self._state(cb) for i, cb in self.active.items()}))

    def _state(self, cb: Any) -> dict[str, Any]:
        return {name: value for name, value in vars(cb).items() if value is not self._model}
