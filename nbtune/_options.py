"""Search options: one dataclass shared by the flags, `%config` and `nbtune.tune()`."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from keyword import iskeyword
from typing import Any, Literal, get_args

from nbtune._errors import TuneUsageError

Backend = Literal["auto", "local", "spark", "sparktrials", "driver"]
Algo = Literal["tpe", "random", "anneal", "grid"]
Mode = Literal["min", "max"]
Prune = Literal["none", "median", "asha", "hyperband"]
LogModel = Literal["none", "best", "all"]
BACKENDS: tuple[Backend, ...] = get_args(Backend)
ALGOS: tuple[Algo, ...] = get_args(Algo)
MODES: tuple[Mode, ...] = get_args(Mode)
PRUNERS: tuple[Prune, ...] = get_args(Prune)
LOG_MODELS: tuple[LogModel, ...] = get_args(LogModel)


def _option(default: Any, help: str, *, flag: bool = True, config: bool = True, logged: bool = False) -> Any:
    """A TuneOptions field and what is derived from it: its flag, its `%config` trait, its MLflow tag."""
    return field(default=default, metadata={"help": help, "flag": flag, "config": config, "logged": logged})


@dataclass(frozen=True)
class TuneOptions:
    """Everything that shapes a search; field names match the flags (`max_evals` = `--max-evals`)."""

    max_evals: int = _option(32, "Trials per search", logged=True)
    parallelism: int | None = _option(
        None, "Trials at once (default: the Spark cores); with --hopper: models training together", logged=True
    )
    backend: Backend = _option("auto", "Where trials run", logged=True)
    algo: Algo = _option("tpe", "hyperopt algorithm", logged=True)
    metric: str = _option("loss", "Variable the cell assigns and the search optimises", logged=True)
    mode: Mode = _option("min", "Minimise or maximise the metric", logged=True)
    seed: int | None = _option(None, "Seed for reproducible searches", logged=True)
    start_from_cell: bool = _option(False, "The first trial runs the values the cell assigns", logged=True)
    timeout: float | None = _option(None, "Seconds for a whole search", logged=True)
    trial_timeout: float | None = _option(None, "Seconds for one trial", logged=True)
    max_failures: int | None = _option(None, "Stop after this many failed trials", logged=True)
    early_stop: int | None = _option(None, "Stop after N trials without improvement", logged=True)
    prune: Prune = _option("none", "Stop hopeless trials early from their reports", logged=True)
    min_steps: int = _option(1, "Steps (epochs) a trial runs before it can be pruned", logged=True)
    reduction_factor: float = _option(3.0, "ASHA/Hyperband: keep the best 1/ETA at each rung", logged=True)
    max_steps: int | None = _option(None, "Steps of a full trial (default: from the reports)", logged=True)
    autoreport: bool = _option(True, "Keras' model.fit reports each epoch on its own")
    space: str | None = _option(None, "A notebook dict of hyperopt expressions to search", config=False, logged=True)
    log_metrics: tuple[str, ...] = _option((), "More variables to record per trial", config=False, logged=True)
    experiment: str | None = _option(None, "MLflow experiment")
    tracking_uri: str | None = _option(None, "MLflow tracking URI")
    mlflow: bool = _option(True, "Track every search in MLflow")
    run_name: str | None = _option(None, "Name of the search's MLflow run")
    mlflow_ui_url: str | None = _option(
        None, "MLflow UI base URL for run links (else NBTUNE_MLFLOW_UI_URL)", flag=False
    )
    resume: str | None = _option(None, "Continue this cell's last search, or the one with this run id", config=False)
    out: str = _option("_tune", "Variable that receives the result")
    apply_best: bool = _option(False, "Assign the best values into the notebook")
    log_model: LogModel = _option("none", "Save `model` in the MLflow run of every trial (all, or bare) or the best")
    by: tuple[str, ...] = _option((), "Key column(s) of --data: one search per group", config=False, logged=True)
    data: str | None = _option(
        None,
        "A notebook DataFrame; the cell sees one group's rows under this name "
        "(with --hopper: arrays, comma-separated, or one Spark DataFrame)",
        config=False,
    )
    hopper: bool = _option(
        False, "Model hopper parallelism: Keras models hop over worker-resident partitions of --data", logged=True
    )
    keep_warm: float = _option(
        60.0, "Minutes Spark's Python workers (and their imports) stay warm after a search (0: off)"
    )
    log_trials: bool = _option(False, "With --by: an MLflow run for every trial, not only for every group")
    quiet: bool = _option(False, "Show nothing while searching")
    ui: bool = _option(False, "A form to pick the options before the search starts", config=False)

    def logged(self) -> dict[str, Any]:
        """The options that shape results, as MLflow records them with each search."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata["logged"]}

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
        if isinstance(values["by"], str):  # --by store,region
            values["by"] = _split_names(values["by"])
        values["by"] = tuple(values["by"])
        if isinstance(values["log_model"], bool):  # log_model=True, as before `best` existed: every trial's
            values["log_model"] = "all" if values["log_model"] else "none"
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
        _one_of("--prune", self.prune, PRUNERS)
        _one_of("--log-model", self.log_model, LOG_MODELS)
        _positive_int("--min-steps", self.min_steps)
        _positive_int("--max-steps", self.max_steps, optional=True)
        if isinstance(self.reduction_factor, bool) or not isinstance(self.reduction_factor, (int, float)):
            raise TuneUsageError(f"--reduction-factor must be a number above 1, got {self.reduction_factor!r}")
        if not self.reduction_factor > 1:
            raise TuneUsageError(f"--reduction-factor must be a number above 1, got {self.reduction_factor!r}")
        if self.max_steps is not None and self.max_steps < self.min_steps:
            raise TuneUsageError(f"--max-steps {self.max_steps} is below --min-steps {self.min_steps}")
        if self.prune != "none" and self.backend == "sparktrials":
            raise TuneUsageError("--prune needs reports from running trials, which SparkTrials cannot send")
        for flag, name in (("--metric", self.metric), ("--out", self.out), ("--space", self.space)):
            if name is not None and not (isinstance(name, str) and name.isidentifier() and not iskeyword(name)):
                raise TuneUsageError(f"{flag} must be a variable name, got {name!r}")
        for name in self.log_metrics:
            if not name.isidentifier():
                raise TuneUsageError(f"--log-metrics must be variable names separated by commas, got {name!r}")
        if self.metric in self.log_metrics:
            raise TuneUsageError(f"--log-metrics repeats the metric '{self.metric}'")
        if self.log_model != "none" and not self.mlflow:
            raise TuneUsageError("--log-model saves each trial's model in its MLflow run: drop --no-mlflow")
        if isinstance(self.keep_warm, bool) or not isinstance(self.keep_warm, (int, float)) or self.keep_warm < 0:
            raise TuneUsageError(f"--keep-warm must be minutes (0 turns it off), got {self.keep_warm!r}")
        _check_groups(self)
        if self.start_from_cell and self.algo == "grid":
            raise TuneUsageError("--start-from-cell is not for --algo grid, which runs every point anyway")
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


def _check_groups(opts: TuneOptions) -> None:
    """`--by` and `--data` come together, and only where one search per group can run (or --hopper)."""
    if opts.hopper:  # --data names the arrays the models hop over: nbtune.hopper checks them
        from nbtune.hopper._plan import check_options

        check_options(opts)
        if opts.log_trials:
            raise TuneUsageError("--log-trials is for --by (every trial has its run already)")
        return
    if opts.by and opts.data is None:
        raise TuneUsageError("--by needs --data DF: one search per group of a DataFrame's rows")
    if opts.data is not None and not opts.by:
        raise TuneUsageError("--data needs --by KEY (one search per group) or --hopper (arrays the models hop over)")
    if opts.data is not None and not (
        isinstance(opts.data, str) and opts.data.isidentifier() and not iskeyword(opts.data)
    ):
        raise TuneUsageError(f"--data must be a variable name, got {opts.data!r}")
    if not opts.by:
        if opts.log_trials:
            raise TuneUsageError("--log-trials is for --by (every trial has its run already)")
        return
    if opts.backend in ("local", "sparktrials", "driver"):
        raise TuneUsageError(
            f"--by runs each group's search in a Spark task: use --backend auto or spark, not {opts.backend}"
        )
    if opts.apply_best:
        raise TuneUsageError("--apply-best cannot assign one value per group: read _tune.best_params[key] instead")
    if opts.prune != "none":
        raise TuneUsageError("--prune is not available with --by: each group's trials run one after another")
    if opts.parallelism is not None:
        raise TuneUsageError("--parallelism is not used with --by: groups run on every Spark slot")
