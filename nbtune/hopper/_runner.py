"""The hopper's payload on a worker: its resident partition, the models built here, one hop at a time.

Light on purpose (standard library and cloudpickle): Keras is there because the cell imports it.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import socket
import time
import traceback
from dataclasses import dataclass
from typing import Any, cast

from nbtune.hopper._callbacks import EpochCallbacks
from nbtune.hopper._feed import Feeds
from nbtune.hopper._fit import FitReached, catch_fit, handled, history, stop_rule
from nbtune.hopper._messages import FinishRequest, FitSpec, HopRequest, HopResult, ModelState, weighted_logs
from nbtune.hopper._resident import to_arrays
from nbtune.spark._worker import input_batches
from nbtune.trial._mlflow_capture import CapturedRun
from nbtune.trial._objective import Objective, _one_line
from nbtune.trial._output import capture_output
from nbtune.trial._payload import Packed, load, pack
from nbtune.trial._records import TrialOutcome, TrialRequest
from nbtune.trial._report import Reporter

Header = tuple[int, str]  # (parts that follow, "partition" | "hop")


@dataclass
class _Built:
    """A model built on this worker for one configuration, and what its fit call said."""

    model: Any
    spec: FitSpec
    x: Any  # this partition's arrays as the fit call takes them
    y: Any
    validation: tuple[Any, ...] | None
    callbacks: EpochCallbacks
    class_weight: Any = None


class HopperRunner:
    """Trains hops of many models on the one partition this worker holds for the whole search."""

    def __init__(
        self, objective: Objective, validation: dict[str, Any] | None, frame: tuple[str, list[str]] | None = None
    ) -> None:
        self.objective = objective  # without the --data arrays: each worker gets its partition instead
        self.validation = validation  # the rows validation_split holds out (sent to every worker)
        # --data DF: (its name, the columns fit reads); the worker's Spark task holds the rows
        self.frame = frame
        self._start_empty()

    def _start_empty(self) -> None:
        """No partition and no model yet: how the runner starts on the driver and on each worker."""
        self._local: Objective | None = None
        self._partition: dict[str, Any] = {}
        self._models: dict[int, _Built] = {}
        self._feeds = Feeds()

    def __getstate__(self) -> dict[str, Any]:
        return {"objective": self.objective, "validation": self.validation, "frame": self.frame}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.objective, self.validation, self.frame = state["objective"], state["validation"], state["frame"]
        self._start_empty()

    def call(self, header: Header, parts: list[tuple[bytes, list[Any]]]) -> Packed:
        """Serve one message of the driver: keep the partition sent (or read this task's rows), or train a hop."""
        kind = header[1]
        if kind in ("partition", "resident"):
            if kind == "partition":
                self._partition = load(parts[0])
                bound = self._partition
            else:
                name, columns = cast(tuple[str, list[str]], self.frame)
                try:
                    self._partition = to_arrays(input_batches(), columns)
                except Exception as exc:  # the driver stops the search with this line
                    return pack(f"the rows of --data {name} do not load on the workers: {_one_line(exc)}")
                bound = {name: self._partition}  # the cell reads name["column"]
            self._local = dataclasses.replace(self.objective, captured={**self.objective.captured, **bound})
            self._models.clear()
            # Arrays that live as long as the search here: the partition, the rows held out, the notebook's.
            lasting = [*self._partition.values(), *(self.validation or {}).values(), *self._local.captured.values()]
            self._feeds = Feeds(lasting)
            return pack(self.rows)
        request: HopRequest = load(parts[0])
        for tid in request.drop:
            self._models.pop(tid, None)
        return pack(self.hop(request))

    @property
    def rows(self) -> int:
        """Rows of the partition resident here."""
        return len(next(iter(self._partition.values()))) if self._partition else 0

    def hop(self, request: HopRequest) -> HopResult:
        """One sub-epoch of one model on this partition; a cell or training error is the result's error."""
        result = HopResult(tid=request.tid, ok=True, host=socket.gethostname(), rows=self.rows)
        start = time.perf_counter()
        try:
            built = self._models.get(request.tid)
            if built is None:
                built = self._models[request.tid] = self._build(request, result)
                if request.state is None:
                    result.spec = built.spec
            if request.state is not None:
                set_state(built.model, request.state)
            if request.callbacks is not None:
                built.callbacks.restore(request.callbacks)
            elif request.state is None:
                result.output += "".join(built.callbacks.start())
            if request.first:
                built.callbacks.begin(request.epoch)
            trained = self._train(built)
            result.logs = {name: float(values[-1]) for name, values in trained.history.items()}
            if request.validate and built.validation is not None:
                scores = self._validate(built)
                result.val_logs = {f"val_{name}": float(value) for name, value in scores.items()}
            if request.validate and built.callbacks.active:  # the epoch ends here: its callbacks see all of it
                logs = {**weighted_logs([*request.partial, (result.rows, result.logs)]), **result.val_logs}
                result.stop = built.callbacks.end(request.epoch, logs)
                result.epoch_logs = {name: float(value) for name, value in logs.items()}
            result.callbacks = built.callbacks.dump()
            result.state = get_state(built.model)
        except Exception as exc:
            self._models.pop(request.tid, None)
            result.ok, result.error = False, _one_line(exc)
            result.traceback = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        result.seconds = time.perf_counter() - start
        return result

    def _train(self, built: _Built) -> Any:
        """One pass of the model over this partition, from the worker's dataset when there is one."""
        spec = built.spec
        feed = self._feeds.batches(built.x, built.y, spec.batch_size, spec.shuffle)
        if feed is not None:
            # The dataset shuffles itself each pass; shuffle=True here would only warn.
            return built.model.fit(feed, epochs=1, shuffle=False, class_weight=built.class_weight, verbose=0)
        return built.model.fit(
            built.x,
            built.y,
            batch_size=spec.batch_size,
            epochs=1,
            shuffle=spec.shuffle,
            class_weight=built.class_weight,
            verbose=0,
        )

    def _validate(self, built: _Built) -> dict[str, float]:
        x, y = (*cast(tuple[Any, ...], built.validation), None)[:2]
        feed = self._feeds.batches(x, y, built.spec.batch_size, False)
        if feed is not None:
            return cast(dict[str, float], built.model.evaluate(feed, verbose=0, return_dict=True))
        scores = built.model.evaluate(x, y, batch_size=built.spec.batch_size, verbose=0, return_dict=True)
        return cast(dict[str, float], scores)

    def _build(self, request: HopRequest, result: HopResult) -> _Built:
        """Run the cell up to its fit call: the compiled model and what the call asks for."""
        local = self._objective()
        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins, **local.captured, **request.params}
        out = io.StringIO()
        try:
            with capture_output(out), handled(catch_fit):
                exec(local.code, ns)
        except FitReached as reached:
            return self._built(reached.model, reached.kwargs)
        finally:
            result.output = out.getvalue()[-4096:]  # what the cell printed while building
        raise RuntimeError("the cell ran to its end without calling model.fit (--hopper trains what fit trains)")

    def _built(self, model: Any, call: dict[str, Any]) -> _Built:
        x, y = call.get("x"), call.get("y")
        names = {id(a): n for n, a in self._partition.items()}
        if id(x) not in names or (y is not None and id(y) not in names):
            raise TypeError(
                "model.fit must take the --data arrays themselves: fit(x_train, y_train, ...), or fit(df['x'], ...)"
            )
        validation = call.get("validation_data")
        if validation is None and self.validation is not None:
            validation = tuple(self.validation[names[id(a)]] for a in (x, y) if a is not None)
        if validation is not None:
            validation = tuple(validation)[:2]
        epochs, batch = int(call.get("epochs") or 1), int(call.get("batch_size") or 32)
        spec = FitSpec(
            epochs, batch, bool(call.get("shuffle", True)), validation is not None, stop_rule(call.get("callbacks"))
        )
        callbacks = EpochCallbacks(call.get("callbacks"), model, epochs)
        return _Built(model, spec, x, y, validation, callbacks, call.get("class_weight"))

    def _objective(self) -> Objective:
        if self._local is None:
            raise RuntimeError("no partition arrived on this worker before its first hop")
        return self._local

    def run(
        self, request: TrialRequest, reporter: Reporter | None = None, *, defer_mlflow: bool = False
    ) -> TrialOutcome:
        """Finish a model: the cell runs once more, its fit returning the hops' weights and logs."""
        assert isinstance(request, FinishRequest)
        finish = request

        def answer(model: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            set_state(model, finish.state, optimizer=False)
            return history(model, finish.history, finish.epochs)

        local = self._objective()
        with handled(answer):
            outcome = local.run(request, reporter, defer_mlflow=defer_mlflow)
        self._models.pop(request.tid, None)  # its last use here
        return outcome

    def take_recording(self) -> tuple[list[CapturedRun], str | None]:
        """What the last finish logged to MLflow (see Objective.take_recording)."""
        return self._objective().take_recording()


def get_state(model: Any) -> ModelState:
    """The model's weights and optimizer variables, as numpy arrays."""
    optimizer = getattr(model, "optimizer", None)
    variables = [v.numpy() for v in optimizer.variables] if optimizer is not None and optimizer.built else []
    return ModelState(list(model.get_weights()), variables)


def set_state(model: Any, state: ModelState, optimizer: bool = True) -> None:
    """Load weights (and optimizer variables) that trained elsewhere into this worker's copy."""
    model.set_weights(state.weights)
    if not optimizer or not state.optimizer:
        return
    opt = model.optimizer
    if not opt.built:
        opt.build(model.trainable_variables)
    if len(opt.variables) != len(state.optimizer):
        raise RuntimeError(
            f"the optimizer has {len(opt.variables)} variables here but {len(state.optimizer)} were sent"
        )
    for variable, value in zip(opt.variables, state.optimizer, strict=True):
        variable.assign(value)
