"""Search options: one dataclass shared by the flags, `%config` and `nbtune.tune()`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from keyword import iskeyword
from typing import Any, Literal, get_args

from nbtune._errors import TuneUsageError

Backend = Literal["auto", "local", "spark", "sparktrials"]
Algo = Literal["tpe", "random", "anneal"]
Mode = Literal["min", "max"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
ALGOS: tuple[Algo, ...] = get_args(Algo)
MODES: tuple[Mode, ...] = get_args(Mode)


@dataclass
class TuneOptions:
    """Everything that shapes a search; field names match the flags (`max_evals` = `--max-evals`)."""

    max_evals: int = 32
    parallelism: int | None = None
    backend: Backend = "auto"
    algo: Algo = "tpe"
    metric: str = "loss"
    mode: Mode = "min"
    seed: int | None = None
    timeout: float | None = None
    trial_timeout: float | None = None
    max_failures: int | None = None
    early_stop: int | None = None
    space: str | None = None
    log_metrics: tuple[str, ...] = ()
    experiment: str | None = None
    tracking_uri: str | None = None
    mlflow: bool = True
    run_name: str | None = None
    mlflow_ui_url: str | None = None  # base URL of the MLflow UI for run links (else NBTUNE_MLFLOW_UI_URL)
    resume: str | None = None  # "" = the last search of this cell, else a parent run id
    out: str = "_tune"
    apply_best: bool = False
    log_model: bool = False  # each trial's `model` saved to its MLflow run
    quiet: bool = False
    ui: bool = False

    @classmethod
    def names(cls) -> list[str]:
        """Field names, i.e. the flags without dashes."""
        return [f.name for f in fields(cls)]

    def replace(self, **changes: Any) -> TuneOptions:
        """A validated copy with some options changed."""
        unknown = set(changes) - set(self.names())
        if unknown:
            raise TuneUsageError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values = {**self.__dict__, **changes}
        if isinstance(values["log_metrics"], str):
            values["log_metrics"] = _split_names(values["log_metrics"])
        values["log_metrics"] = tuple(values["log_metrics"])
        opts = TuneOptions(**values)
        opts.validate()
        return opts

    def validate(self) -> None:
        """Raise a one-line TuneUsageError naming the first bad option."""
        _positive_int("--max-evals", self.max_evals)
        _positive_int("--parallelism", self.parallelism, optional=True)
        _positive_int("--max-failures", self.max_failures, optional=True)
        _positive_int("--early-stop", self.early_stop, optional=True)
        _positive_number("--timeout", self.timeout)
        _positive_number("--trial-timeout", self.trial_timeout)
        _one_of("--backend", self.backend, BACKENDS)
        _one_of("--algo", self.algo, ALGOS)
        _one_of("--mode", self.mode, MODES)
        for flag, name in (("--metric", self.metric), ("--out", self.out), ("--space", self.space)):
            if name is not None and not (isinstance(name, str) and name.isidentifier() and not iskeyword(name)):
                raise TuneUsageError(f"{flag} must be a variable name, got {name!r}")
        for name in self.log_metrics:
            if not name.isidentifier():
                raise TuneUsageError(f"--log-metrics must be variable names separated by commas, got {name!r}")
        if self.metric in self.log_metrics:
            raise TuneUsageError(f"--log-metrics repeats the metric '{self.metric}'")
        if self.log_model and not self.mlflow:
            raise TuneUsageError("--log-model saves each trial's model in its MLflow run: drop --no-mlflow")
        if self.seed is not None and (not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0):
            raise TuneUsageError(f"--seed must be a non-negative integer, got {self.seed!r}")


def _split_names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _positive_int(flag: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TuneUsageError(f"{flag} must be a positive integer, got {value!r}")


def _positive_number(flag: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise TuneUsageError(f"{flag} must be a positive number of seconds, got {value!r}")


def _one_of(flag: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TuneUsageError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
