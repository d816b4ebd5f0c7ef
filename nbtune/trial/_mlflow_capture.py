"""What a trial's cell logs with MLflow's fluent API, recorded where the trial runs and sent with its outcome.

While a trial runs, MLflow (if the cell uses it) points at a store of the trial's own: a throwaway
file store in a temporary directory, with a run open for the trial. `mlflow.log_metric`, autologging,
`mlflow.active_run()` and `start_run(nested=True)` act on that run as they would on any other. When
the trial ends, the recorded runs travel with the outcome and the driver's MLflow writer copies them
into the trial's child run (see tracking/_replay). So a worker needs no route to the tracking server
and no credentials, no worker ever creates a stray run, and the trial never waits on the real store.

Light on purpose: Spark workers import this module. MLflow itself is touched only once the cell has
imported it (now, or later through an import hook), so a cell that does not use MLflow pays nothing.
"""

from __future__ import annotations

import importlib
import io
import os
import queue
import shutil
import sys
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FunctionType, ModuleType
from typing import Any

from nbtune.trial._after_import import AfterImport

# MLflow's file store is in maintenance mode and refuses to open unless this is set; it is exactly the
# recorder needed here (every fluent call and autologging flavour works against it, no server, no DB).
_ALLOW_FILE_STORE = "MLFLOW_ALLOW_FILE_STORE"
_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", _ALLOW_FILE_STORE)
# Autologging that needs the JVM: meaningless in a trial (and on a worker, impossible).
_DRIVER_ONLY_AUTOLOG = frozenset({"spark", "pyspark.ml"})
# Tags MLflow sets itself on every run: describe the recording process, not the trial.
_SYSTEM_TAGS = frozenset(
    {"mlflow.parentRunId", "mlflow.runName", "mlflow.user", "mlflow.source.name", "mlflow.source.type"}
)
_STATUS = {"ok": "FINISHED", "failed": "FAILED", "pruned": "KILLED", "cancelled": "KILLED"}

# Held while this process's MLflow points at a trial's store. The driver's MLflow writer takes it to read
# the notebook's tracking URI and experiment, as a local-backend trial runs in the notebook's own process.
uri_lock = threading.RLock()
_trash: queue.SimpleQueue[Path] = queue.SimpleQueue()  # trial stores to delete
_cleaner: threading.Thread | None = None
_cleaner_lock = threading.Lock()
_autolog_sent: dict[str, dict[str, Any]] = {}  # the autologging this process was asked for last
_a_trial_imported_mlflow = False  # a trial imported MLflow (a library that logs on its own): all trials record


@dataclass(kw_only=True)
class CapturedModel:
    """A model the cell logged (`mlflow.<flavor>.log_model`, autologging): MLflow 3's LoggedModel."""

    key: str  # its id in the trial's store
    name: str
    model_type: str | None
    params: dict[str, str]
    tags: dict[str, str]
    step: int  # the run output's step
    files: bytes  # its artifacts, zipped


@dataclass(kw_only=True)
class CapturedRun:
    """One run of a trial's store: the trial's own (parent None) or one the cell nested under it."""

    key: str  # its id in the trial's store
    parent: str | None
    name: str
    status: str
    start_ms: int
    end_ms: int | None
    params: dict[str, str]
    tags: dict[str, str]
    metrics: list[tuple[str, float, int, int]]  # (key, value, timestamp in ms, step): whole histories
    datasets: list[bytes] = field(default_factory=list)  # DatasetInput protos
    files: bytes | None = None  # its artifacts, zipped
    models: list[CapturedModel] = field(default_factory=list)

    def __len__(self) -> int:
        """Roughly how many things it holds (for the writer's batching)."""
        return len(self.params) + len(self.tags) + len(self.metrics) + len(self.models) + bool(self.files)


def autolog_config() -> dict[str, dict[str, Any]]:
    """The autologging the notebook turned on, for workers to turn on too (empty if MLflow is not loaded)."""
    if "mlflow" not in sys.modules:
        return {}
    import pickle

    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    config: dict[str, dict[str, Any]] = {}
    for flavor, settings in AUTOLOGGING_INTEGRATIONS.items():
        if flavor in _DRIVER_ONLY_AUTOLOG or not settings or settings.get("disable"):
            continue
        try:
            pickle.dumps(settings)
        except Exception:  # e.g. a callable in extra settings: the worker cannot get it
            continue
        config[flavor] = dict(settings)
    return config


class TrialCapture:
    """Points MLflow at a trial's own store for the length of one trial (a context manager)."""

    def __init__(self, name: str, autolog: dict[str, dict[str, Any]] | None = None, names_mlflow: bool = True) -> None:
        self._name, self._autolog = name, autolog or {}
        self._names_mlflow = names_mlflow  # the cell, or what it captured, refers to MLflow
        self._tmp: Path | None = None  # a temporary directory, holding the trial's store
        self._root: Path | None = None
        self._run_id: str | None = None
        self._depth = 0  # runs on MLflow's active run stack under the trial's own
        self._saved_env: dict[str, str | None] = {}
        self._saved_experiment: str | None = None
        self._saved_uri: str | None = None
        self._finder: AfterImport | None = None
        self.status = "cancelled"  # until the trial says how it ended
        self.problem: str | None = None  # why what the cell logged could not be collected

    def __enter__(self) -> TrialCapture:
        loaded = "mlflow" in sys.modules and hasattr(sys.modules["mlflow"], "start_run")
        # With autologging on in the notebook (or still on here from an earlier search: it must be turned
        # off), MLflow is needed whether or not the cell imports it. A run costs about 9 ms, so not for a
        # cell that never names MLflow in a process where only something else loaded it (nbtune, an
        # earlier Spark job in the same Python worker).
        if self._autolog or _autolog_sent or (loaded and (self._names_mlflow or _a_trial_imported_mlflow)):
            self._activate()
        elif not loaded:  # the cell may import MLflow itself: start recording the moment it does
            self._finder = AfterImport("mlflow", lambda _: self._imported())
            sys.meta_path.insert(0, self._finder)
        return self

    def _imported(self) -> None:
        global _a_trial_imported_mlflow
        _a_trial_imported_mlflow = True
        self._activate()

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        if self._run_id is not None:
            self._deactivate()
        if kind is not None:  # the trial was cancelled (nobody will collect): only clean up
            self.discard()

    def _activate(self) -> None:
        import mlflow

        # Module globals of MLflow's fluent API (untyped): the notebook's experiment and the active run stack.
        fluent: Any = importlib.import_module("mlflow.tracking.fluent")
        tracking_utils: Any = importlib.import_module("mlflow.tracking._tracking_service.utils")

        self._saved_env = {name: os.environ.get(name) for name in _ENV}
        self._saved_uri = tracking_utils._tracking_uri  # the notebook's own setting: None = MLflow's default
        self._saved_experiment = fluent._active_experiment_id
        uri_lock.acquire()  # released by _restore: nobody reads the notebook's URI while it is swapped
        try:
            self._tmp = Path(tempfile.mkdtemp(prefix="nbtune-mlflow-"))
            self._root = self._tmp / "store"  # a directory the file store creates, with its default experiment
            os.environ[_ALLOW_FILE_STORE] = "true"
            os.environ["MLFLOW_TRACKING_URI"] = self._root.as_uri()
            os.environ["MLFLOW_EXPERIMENT_ID"] = "0"  # the file store's default experiment
            for name in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
                os.environ.pop(name, None)
            mlflow.set_tracking_uri(self._root.as_uri())
            # `mlflow.set_experiment` in the notebook names an experiment the trial's store does not have.
            fluent._active_experiment_id = "0"
            _turn_on_autolog(self._autolog)
            outer = mlflow.active_run()  # the notebook's own run, on the local backend: the trial nests under it
            run = mlflow.start_run(experiment_id="0", run_name=self._name, nested=outer is not None)
            self._run_id = run.info.run_id
            self._depth = len(fluent._active_run_stack.get())
        except Exception as exc:  # the trial runs all the same; what its cell logs goes where MLflow points
            self.problem = f"nbtune: could not record what the trial logs to MLflow: {exc}"
            self._restore(mlflow, fluent)
        except BaseException:  # a cancel raised in this thread meanwhile: the lock must not outlive it
            self._run_id = None
            self._restore(mlflow, fluent)
            self.discard()
            raise

    def _deactivate(self) -> None:
        import mlflow

        fluent: Any = importlib.import_module("mlflow.tracking.fluent")
        try:
            status = _STATUS.get(self.status, "FAILED")
            # Runs the cell left open (an exception inside `with start_run(nested=True)` closes its own).
            while len(fluent._active_run_stack.get()) >= self._depth and mlflow.active_run() is not None:
                mlflow.end_run(status)
        finally:
            self._restore(mlflow, fluent)

    def _restore(self, mlflow: Any, fluent: Any) -> None:
        """Point MLflow back where the notebook had it."""
        try:
            mlflow.set_tracking_uri(self._saved_uri)  # None: "not set" again
            fluent._active_experiment_id = self._saved_experiment
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
        finally:
            uri_lock.release()

    @property
    def recording(self) -> bool:
        """True if MLflow pointed at the trial's store: there is something to collect."""
        return self._root is not None

    def discard(self) -> None:
        """Remove the trial's store unread (tracking is off)."""
        tmp, self._root, self._tmp = self._tmp, None, None
        if tmp is not None:
            _remove_later(tmp)

    def collect(self) -> list[CapturedRun]:
        """The runs the trial's store holds (the trial's own first); removes the store. Empty if MLflow was unused."""
        root, tmp, self._root, self._tmp = self._root, self._tmp, None, None
        if root is None or tmp is None:
            return []
        try:
            return _read_store(root, self._run_id) if self._run_id is not None else []
        except Exception as exc:  # what the cell logged is lost, the trial is not
            self.problem = f"nbtune: could not read what the trial logged to MLflow: {exc}"
            return []
        finally:
            _remove_later(tmp)


def _remove_later(directory: Path) -> None:
    """Delete a trial's store off the trial's path (a few ms of unlink and rmdir calls), on one thread."""
    global _cleaner
    with _cleaner_lock:
        if _cleaner is None:
            _cleaner = threading.Thread(target=_clean, name="nbtune-cleanup", daemon=True)
            _cleaner.start()
    _trash.put(directory)


def _clean() -> None:
    while True:
        shutil.rmtree(_trash.get(), ignore_errors=True)


def _turn_on_autolog(config: dict[str, dict[str, Any]]) -> None:
    """The notebook's autologging in this process too: a Spark worker does not inherit it.

    In the notebook's own process (the local backend) every flavour is already as the notebook set it.
    """
    global _autolog_sent
    if config == _autolog_sent:
        return
    from mlflow.utils.autologging_utils import AUTOLOGGING_INTEGRATIONS

    wanted = dict(config)
    for flavor in _autolog_sent.keys() - config.keys():  # turned on for an earlier search, off in the notebook now
        wanted[flavor] = {"disable": True}
    # The universal `mlflow.autolog()` first: flavour-specific settings made after it override its own.
    for flavor in sorted(wanted, key=lambda f: f != "mlflow"):
        settings = wanted[flavor]
        if AUTOLOGGING_INTEGRATIONS.get(flavor) == settings:
            continue
        module = "mlflow" if flavor == "mlflow" else f"mlflow.{flavor}"
        try:
            importlib.import_module(module).autolog(**settings)
        except Exception as exc:
            warnings.warn(f"nbtune: {module}.autolog() failed on this worker: {exc}", RuntimeWarning, stacklevel=2)
    _autolog_sent = config


def _read_store(root: Path, trial_run: str | None) -> list[CapturedRun]:
    from mlflow.entities import ViewType

    file_store: Any = importlib.import_module("mlflow.store.tracking.file_store")
    allowed = os.environ.get(_ALLOW_FILE_STORE)
    os.environ[_ALLOW_FILE_STORE] = "true"
    try:
        store = file_store.FileStore(str(root), root.as_uri())
    finally:
        if allowed is None:
            os.environ.pop(_ALLOW_FILE_STORE, None)
        else:
            os.environ[_ALLOW_FILE_STORE] = allowed
    runs = store.search_runs(["0"], "", ViewType.ALL, max_results=50_000)
    models = store.search_logged_models(["0"], max_results=10_000)
    captured = []
    for run in runs:
        info, data = run.info, run.data
        parent = data.tags.get("mlflow.parentRunId")
        captured.append(
            CapturedRun(
                key=info.run_id,
                # A run the cell started after ending the trial's own is one more under the trial's run.
                parent=None if info.run_id == trial_run else (parent or trial_run or ""),
                name=info.run_name or "",
                status=info.status,
                start_ms=info.start_time or 0,
                end_ms=info.end_time,
                params=dict(data.params),
                tags={k: v for k, v in data.tags.items() if k not in _SYSTEM_TAGS},
                metrics=_histories(store, info, data.metrics),
                datasets=[d.to_proto().SerializeToString() for d in (run.inputs.dataset_inputs if run.inputs else [])],
                files=_zip(Path(info.artifact_uri.removeprefix("file://"))),
                models=[
                    _model(m, out.step)
                    for out in (run.outputs.model_outputs if run.outputs else [])
                    for m in models
                    if m.model_id == out.model_id
                ],
            )
        )
    captured.sort(key=lambda r: (r.parent is not None, r.start_ms))
    return captured


def _histories(store: Any, info: Any, keys: Iterable[str]) -> list[tuple[str, float, int, int]]:
    """Every value of every metric of a run: (key, value, timestamp, step)."""
    try:  # the file store's own reader, once per run (its public one looks the run up again for every metric)
        directory = Path(store._get_run_dir(info.experiment_id, info.run_id), "metrics")
        return [
            (key, m.value, m.timestamp, m.step)
            for key in keys
            for m in (
                store._get_metric_from_line(info.run_id, key, line, info.experiment_id)
                for line in (directory / key).read_text().splitlines()
                if line.strip()
            )
        ]
    except (AttributeError, OSError):  # pragma: no cover - another MLflow version
        history = store.get_metric_history
        return [(m.key, m.value, m.timestamp, m.step) for key in keys for m in history(info.run_id, key)]


def _model(model: Any, step: int) -> CapturedModel:
    return CapturedModel(
        key=model.model_id,
        name=model.name,
        model_type=model.model_type,
        params=dict(model.params or {}),
        tags={k: v for k, v in (model.tags or {}).items() if k not in _SYSTEM_TAGS},
        step=step,
        files=_zip(Path(model.artifact_location.removeprefix("file://"))) or b"",
    )


def _zip(directory: Path) -> bytes | None:
    files = [p for p in directory.rglob("*") if p.is_file()] if directory.is_dir() else []
    if not files:
        return None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in files:
            archive.write(path, path.relative_to(directory).as_posix())
    return buf.getvalue()


def names_mlflow(code: CodeType, captured: dict[str, Any]) -> bool:
    """Whether a cell's code, or a module, function or class it captured, refers to MLflow by name."""
    try:
        return _code_names_mlflow(code) or any(_value_names_mlflow(value) for value in captured.values())
    except Exception:  # an object too odd to look into: record, as before this check
        return True


def _value_names_mlflow(value: Any) -> bool:
    if isinstance(value, ModuleType):
        return value.__name__.split(".")[0] == "mlflow"
    cls = value if isinstance(value, type) else type(value)
    if str(getattr(cls, "__module__", "") or "").split(".")[0] == "mlflow":
        return True
    for member in [value, *vars(cls).values()]:  # a function, or a class's (an instance's class's) methods
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if isinstance(member, FunctionType) and _code_names_mlflow(member.__code__):
            return True
    return False


def _code_names_mlflow(code: CodeType) -> bool:
    return "mlflow" in code.co_names or any(isinstance(c, CodeType) and _code_names_mlflow(c) for c in code.co_consts)
