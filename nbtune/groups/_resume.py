"""`--resume` with `--by`: the groups an earlier search of this cell finished, read back from MLflow."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune.groups._result import GroupOutcome
from nbtune.tracking._resume import child_runs
from nbtune.tracking._tracker import CELL_HASH_TAG, cell_hash

GROUP_TAG, BEST_TAG, BY_TAG = "nbtune.group", "nbtune.best_params", "nbtune.by"
_DONE = {"FINISHED": "ok", "FAILED": "failed"}  # a KILLED group run (cancelled) runs again


def group_label(keys: list[str], key: tuple[Any, ...]) -> str:
    """A group's key as its MLflow run records it (the same text from the same Spark values)."""
    return json.dumps(dict(zip(keys, key, strict=True)), default=str)


@dataclass
class Resumed:
    """The earlier search: its parent run and the groups it finished, by `group_label`."""

    parent_run_id: str
    experiment_id: str
    groups: dict[str, GroupOutcome] = field(default_factory=dict)


def load_groups(options: TuneOptions, source: str) -> Resumed | None:
    """The search to continue (`--resume RUN_ID`, or this cell's last with the same --by), None if none yet."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=options.tracking_uri)
    by = json.dumps(list(options.by))
    if options.resume:
        parent = client.get_run(options.resume)
        if parent.data.tags.get(BY_TAG) != by:
            raise TuneUsageError(f"--resume {options.resume} is not a search by {','.join(options.by)}")
    else:
        experiment = client.get_experiment_by_name(options.experiment or "nbtune")
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.`{CELL_HASH_TAG}` = '{cell_hash(source)}' and tags.`{BY_TAG}` = '{by}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            return None
        parent = runs[0]
    resumed = Resumed(parent.info.run_id, parent.info.experiment_id)
    with tempfile.TemporaryDirectory() as tmp:
        for run in child_runs(client, parent):
            status = _DONE.get(run.info.status)
            label = run.data.tags.get(GROUP_TAG)
            if status is None or label is None or label in resumed.groups:
                continue
            resumed.groups[label] = _outcome(client, run, status, options.metric, tmp)
    return resumed


def _outcome(client: Any, run: Any, status: str, metric: str, tmp: str) -> GroupOutcome:
    outcome = GroupOutcome(key=(), rows=int(run.data.metrics.get("rows", 0)), status=status)
    outcome.best_value = run.data.metrics.get(metric) if status == "ok" else None
    outcome.best_params = json.loads(run.data.tags.get(BEST_TAG) or "{}")
    outcome.failed = int(run.data.metrics.get("failed_trials", 0))
    outcome.duration = float(run.data.metrics.get("duration", 0.0))
    outcome.error = run.data.tags.get("nbtune.error")
    outcome.run_id = run.info.run_id
    try:
        path = client.download_artifacts(run.info.run_id, "trials.json", tmp)
        outcome.trials = json.loads(Path(path).read_text())
    except Exception:  # an unreadable table: the group is still done, its trials just not listed
        outcome.trials = []
    return outcome
