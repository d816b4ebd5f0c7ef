"""What travels between the driver and a hopper worker (light: a worker imports it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbtune.hopper._fit import StopRule
from nbtune.trial._records import TrialRequest


@dataclass
class ModelState:
    """A model between hops: its weights and its optimizer's variables (numpy arrays)."""

    weights: list[Any]
    optimizer: list[Any]

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays (what a hop moves)."""
        return sum(int(getattr(a, "nbytes", 0)) for a in (*self.weights, *self.optimizer))


@dataclass(frozen=True)
class FitSpec:
    """What the cell's fit call asked for, read where the model was first built."""

    epochs: int
    batch_size: int
    shuffle: bool
    validates: bool  # validation_data or validation_split: each epoch ends with a validation pass
    stop: StopRule | None = None  # EarlyStopping among its callbacks


CallbackStates = bytes  # a model's Keras callbacks' attributes, pickled on a worker (see hopper._callbacks)


@dataclass
class HopRequest:
    """Train model `tid` one pass over this worker's partition (building it here first if need be)."""

    tid: int
    params: dict[str, Any]
    state: ModelState | None  # None: the model's first hop starts from the weights it is built with
    validate: bool = False  # the last partition of its epoch: validate afterwards
    drop: list[int] = field(default_factory=list)  # models that left the search: free their copies here
    epoch: int = 0  # the model's 0-based epoch this sub-epoch belongs to
    first: bool = False  # the model's first partition this epoch: its callbacks' on_epoch_begin runs here
    callbacks: CallbackStates | None = None  # where the model's callbacks left off (None: not run yet)
    partial: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # this epoch's earlier hops' logs


@dataclass
class HopResult:
    """A sub-epoch's outcome: the state to carry on, the training logs, and the validation's at epoch ends."""

    tid: int
    ok: bool
    state: ModelState | None = None
    logs: dict[str, float] = field(default_factory=dict)
    val_logs: dict[str, float] = field(default_factory=dict)
    rows: int = 0
    spec: FitSpec | None = None  # sent by the worker that built the model first
    seconds: float = 0.0  # training (and validation) time on the worker
    host: str = ""
    error: str | None = None
    traceback: str | None = None
    output: str = ""
    callbacks: CallbackStates | None = None  # the model's callbacks' state after this hop
    epoch_logs: dict[str, float] | None = None  # at an epoch's end: the logs its callbacks saw (and added to)
    stop: bool = False  # a callback set model.stop_training at this epoch's end


def weighted_logs(partial: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """An epoch's training logs: each sub-epoch's, weighted by the rows of its partition."""
    total: dict[str, float] = {}
    rows: dict[str, int] = {}
    for n, logs in partial:
        for name, value in logs.items():
            total[name] = total.get(name, 0.0) + n * value
            rows[name] = rows.get(name, 0) + n
    return {name: total[name] / rows[name] for name in total if rows[name]}


@dataclass(kw_only=True)
class FinishRequest(TrialRequest):
    """Run the cell once more, its fit answered by the trained weights and the per-epoch logs."""

    state: ModelState
    history: dict[str, list[float]]
    epochs: int
