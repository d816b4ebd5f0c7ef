"""Copy what a trial's cell logged to MLflow (recorded by trial/_mlflow_capture) into the trial's child run.

Runs on the driver's MLflow writer thread: the runs the cell nested under the trial's run become
children of the child run, models it logged become LoggedModels of the run that logged them.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import zipfile
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from nbtune._text import shorten
from nbtune.trial._mlflow_capture import CapturedModel, CapturedRun

# MLflow's limits for one log_batch (all entities, params, tags), and for the length of a param's and a tag's value.
_MAX_ENTITIES, _MAX_PARAMS, _MAX_TAGS = 1000, 100, 100
_PARAM_MAX, _TAG_MAX = 6000, 8000
ArtifactWriter = Callable[[str, str], None]  # (run id, local directory): upload the directory's files


def own_entities(run: CapturedRun, taken: Collection[str]) -> tuple[list[Any], list[Any], list[Any]]:
    """The trial's own run's metrics, params and tags as MLflow entities, for the tracker's `log_batch`.

    `taken`: the params nbtune logs itself (the tuned values win over a cell's param of the same name).
    """
    from mlflow.entities import Metric, Param, RunTag

    metrics = [Metric(k, v, ms, step) for k, v, ms, step in run.metrics]
    params = [Param(k, shorten(v, _PARAM_MAX)) for k, v in run.params.items() if k not in taken]
    tags = [RunTag(k, shorten(v, _TAG_MAX)) for k, v in run.tags.items()]
    return metrics, params, tags


def replay(client: Any, experiment_id: str, run_id: str, runs: list[CapturedRun], artifacts: ArtifactWriter) -> None:
    """Write what `runs` hold besides the trial's own run's data (see own_entities) under the child run `run_id`.

    Nested runs become children of the trial's run; `artifacts(run_id, local_dir)` uploads a directory.
    """
    from mlflow.entities import RunStatus

    ids: dict[str, str] = {}
    for run in runs:
        if run.parent is None:  # its metrics, params and tags went with the tracker's batch
            target = run_id
        else:
            parent = ids.get(run.parent, run_id)  # a parent outside the recording: the trial's run
            tags = {"mlflow.parentRunId": parent}
            created = client.create_run(experiment_id, start_time=run.start_ms, tags=tags, run_name=run.name or None)
            target = created.info.run_id
            log_batches(client, target, *own_entities(run, ()))
        ids[run.key] = target
        if run.datasets:
            from mlflow.entities import DatasetInput
            from mlflow.protos.service_pb2 import DatasetInput as DatasetInputProto

            inputs = [DatasetInput.from_proto(DatasetInputProto.FromString(raw)) for raw in run.datasets]
            client.log_inputs(target, datasets=inputs)
        if run.files:
            with _unpacked(run.files) as tmp:
                artifacts(target, tmp)
        for model in run.models:
            _log_model(client, experiment_id, target, run.key, model)
        if run.parent is not None:
            # Through the store, as the tracker does: `set_terminated` prints a link per run.
            store = getattr(getattr(client, "_tracking_client", None), "store", None)
            if store is not None:
                store.update_run_info(target, RunStatus.from_string(run.status), run.end_ms, None)
            else:
                client.set_terminated(target, run.status, run.end_ms)


def log_batches(client: Any, run_id: str, metrics: list[Any], params: list[Any], tags: list[Any]) -> None:
    """`log_batch` as often as MLflow's limits on one batch require (often once)."""
    while metrics or params or tags:
        take_params, take_tags = params[:_MAX_PARAMS], tags[:_MAX_TAGS]
        take_metrics = metrics[: _MAX_ENTITIES - len(take_params) - len(take_tags)]
        client.log_batch(run_id, metrics=take_metrics, params=take_params, tags=take_tags)
        metrics, params, tags = metrics[len(take_metrics) :], params[len(take_params) :], tags[len(take_tags) :]


def _log_model(client: Any, experiment_id: str, run_id: str, recorded_run: str, model: CapturedModel) -> None:
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    created = client.create_logged_model(
        experiment_id,
        name=model.name,
        source_run_id=run_id,
        tags=model.tags,
        params=model.params,
        model_type=model.model_type,
    )
    with _unpacked(model.files) as tmp:
        mlmodel = Path(tmp, "MLmodel")
        if mlmodel.is_file():  # it names the recorder's ids: make them the real ones
            text = mlmodel.read_text().replace(model.key, created.model_id).replace(recorded_run, run_id)
            mlmodel.write_text(text)
        client.log_model_artifacts(created.model_id, tmp)
    client.finalize_logged_model(created.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(created.model_id, model.step)])


@contextlib.contextmanager
def _unpacked(data: bytes) -> Iterator[str]:
    """A temporary directory holding a zip archive's files."""
    with tempfile.TemporaryDirectory(prefix="nbtune-replay-") as tmp:
        if data:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                archive.extractall(tmp)
        yield tmp
