"""Build the objective on the driver: check the metrics, capture the notebook variables, check they ship."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import ModuleType
from typing import Any

from nbtune._errors import TuneUsageError
from nbtune._options import TuneOptions
from nbtune._text import first_line
from nbtune.cell._parse import CellSpec
from nbtune.trial._mlflow_capture import autolog_config
from nbtune.trial._objective import Objective


def capture_namespace(reads: Iterable[str], namespace: Mapping[str, Any], skip: Iterable[str] = ()) -> dict[str, Any]:
    """The notebook variables the body reads (modules and functions included)."""
    skipped = set(skip)
    return {
        name: namespace[name]
        for name in sorted(reads)
        if name in namespace and name not in skipped and not _is_ipython_internal(name)
    }


_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh", "_dh"}


def _is_ipython_internal(name: str) -> bool:
    # IPython's output history (_, _3, _i3, Out...) is never what a training body means.
    return name in _IPYTHON_NAMES or (name.startswith(("_i", "_")) and name.lstrip("_i").isdigit() and name != "_")


def check_picklable(captured: Mapping[str, Any]) -> None:
    """Fail with the name of the first captured variable that cannot be shipped to workers."""
    import cloudpickle

    for name, value in captured.items():
        if isinstance(value, ModuleType):
            continue
        try:
            cloudpickle.dumps(value)
        except Exception as exc:
            raise TuneUsageError(
                f"variable '{name}' ({type(value).__name__}) cannot be sent to the workers: {first_line(exc)}"
            ) from None


def build_objective(
    spec: CellSpec, namespace: Mapping[str, Any], options: TuneOptions, param_names: list[str]
) -> Objective:
    """Check the body assigns its metrics, capture what it reads, and wrap it as an Objective."""
    for name in (options.metric, *options.log_metrics):
        if name not in spec.binds:
            flag = "--metric" if name == options.metric else "--log-metrics"
            raise TuneUsageError(
                f"the cell never assigns '{name}' ({flag}); assign it, e.g. '{name} = ...', or name another variable"
            )
    captured = capture_namespace(spec.reads, namespace, skip=param_names)
    return Objective(
        body=spec.body,
        source=spec.source,
        captured=captured,
        param_names=list(param_names),
        metric=options.metric,
        mode=options.mode,
        log_metrics=options.log_metrics,
        line_offset=spec.line_offset,
        log_model=options.log_model == "all",  # `best` is saved once the search knows it (search/_driver_search)
        autoreport=options.autoreport,
        autolog=autolog_config(),
        keep_mlflow=options.mlflow,
    )
