"""What a Spark worker imports stays light: a guard for the 3.6 s -> 0.1 s worker start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cloudpickle

from nbtune._options import TuneOptions
from nbtune.cell._parse import parse_cell
from nbtune.search._build import build_objective

# What the driver may load but a worker must not: each costs seconds per worker start.
HEAVY = ("IPython", "hyperopt", "mlflow", "ipywidgets", "matplotlib", "pandas", "traitlets", "scipy")
WORKER = """
import pickle, sys
from nbtune.spark import _worker, _channel  # what a worker task imports
from nbtune.trial import _model_export, _native_output, _objective, _payload, _records, _timeouts
objective = pickle.loads(open(sys.argv[1], "rb").read())  # as a worker receives it
outcome = objective.run(_records.TrialRequest(tid=0, params={"x": 0.25}))
assert outcome.status == "ok" and outcome.value == 0.0625, outcome
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))))
"""


def worker_imports(tmp_path: Path, extra: str = "") -> list[str]:
    """The heavy top-level packages loaded by a fresh process that runs one trial as a worker does."""
    spec = parse_cell("x = 0.5  # tune: uniform(0, 1)\nloss = x ** 2\n")
    objective = build_objective(spec, {}, TuneOptions(), ["x"])
    (tmp_path / "objective.pkl").write_bytes(cloudpickle.dumps(objective))
    done = subprocess.run(
        [sys.executable, "-c", extra + WORKER, str(tmp_path / "objective.pkl"), *HEAVY],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_worker_runs_a_trial_without_loading_any_heavy_module(tmp_path: Path) -> None:
    assert worker_imports(tmp_path) == []


def test_the_guard_sees_a_heavy_import(tmp_path: Path) -> None:
    # One convenience import of a driver module must show, or the test above proves nothing.
    assert "hyperopt" in worker_imports(tmp_path, extra="import nbtune.search._loop\n")


HOPPER_WORKER = """
import pickle, sys
from nbtune.spark import _worker, _channel  # what a worker task imports
from nbtune.trial._payload import pack
runner = pickle.loads(open(sys.argv[1], "rb").read())  # the hopper's payload, as a worker receives it
part = pack({"x_train": list(range(10)), "y_train": list(range(10))})
assert runner.call((1, "partition"), [(part.main, part.buffers)]) is not None and runner.rows == 10
print(" ".join(sorted({m.split(".")[0] for m in sys.modules} & set(sys.argv[2:]))))
"""


def test_a_hopper_worker_takes_its_partition_without_loading_any_heavy_module(tmp_path: Path) -> None:
    from nbtune.hopper._runner import HopperRunner

    spec = parse_cell("x = 0.5  # tune: uniform(0, 1)\nmodel.fit(x_train, y_train)\nloss = x\n")
    objective = build_objective(spec, {}, TuneOptions(), ["x"])
    (tmp_path / "runner.pkl").write_bytes(cloudpickle.dumps(HopperRunner(objective, None)))
    done = subprocess.run(
        [sys.executable, "-c", HOPPER_WORKER, str(tmp_path / "runner.pkl"), *HEAVY],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).parent.parent,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == []
