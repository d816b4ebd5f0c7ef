"""The driver of a search per group: lay the groups out, run one Spark job, follow it, keep what finished."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from nbtune._errors import SearchFailed, TuneUsageError
from nbtune._events import Listener, Listeners, SearchInfo
from nbtune._options import TuneOptions
from nbtune.cell._parse import CellSpec
from nbtune.cell._space import search_space
from nbtune.groups._channel import GroupChannel
from nbtune.groups._layout import Layout, find_salts, laid_out, partition_count, plan_layout
from nbtune.groups._plan import GroupPlan, check_cell, is_spark_frame, make_plan
from nbtune.groups._progress import GroupProgress
from nbtune.groups._result import GroupOutcome, GroupsResult
from nbtune.groups._resume import Resumed, group_label
from nbtune.groups._task import GID, RESULT_FIELDS, SALT, GroupTask, group_function, group_seed
from nbtune.search._build import build_objective
from nbtune.trial._objective import Objective
from nbtune.ui._kernel import in_widget_frontend

_POLL = 0.1  # seconds between looks at the channel, the clock and the Cancel button


def run_groups(
    spec: CellSpec,
    options: TuneOptions,
    namespace: Mapping[str, Any],
    *,
    listeners: Sequence[Listener] = (),
    info: SearchInfo | None = None,
) -> GroupsResult:
    """One search per group of `--data`, grouped `--by` its key columns; raises SearchFailed if every group failed."""
    from nbtune._backends import pack_for_workers
    from nbtune.spark._session import active_session, start_local_session

    check_cell(spec, options, namespace)
    space = search_space(spec.params, options.space, namespace)
    if options.start_from_cell:
        space.cell_point()  # its UsageError before any Spark job
    others = {k: v for k, v in namespace.items() if k != options.data}  # the rows travel per group, not captured
    # --log-model: each group's best model, exported once by its task, not every trial's
    objective = replace(build_objective(spec, others, options, space.names), keep_mlflow=False, log_model=False)
    pack_for_workers(objective)  # names the variable that cannot ship, before any Spark job
    value = namespace[options.data or ""]
    spark = value.sparkSession if is_spark_frame(value) else active_session(namespace) or start_local_session()
    plan = make_plan(spark, options, namespace)
    resumed = None
    if options.mlflow:
        from nbtune.groups._resume import load_groups
        from nbtune.tracking._setup import tracking_setup

        fresh, _ = tracking_setup(options.replace(resume=None), namespace, spec.source, space)  # the experiment
        options = fresh.replace(resume=options.resume)
        if options.resume is not None:
            resumed = load_groups(options, spec.source)
            if not options.quiet:
                print(_resuming(resumed, options))
    result = GroupsResult(options.metric, options.mode, space.names, options.log_metrics, keys=plan.keys)
    result.backend, result.max_evals = "spark", options.max_evals
    info = info or SearchInfo(
        name=options.run_name or f"{options.out}: {options.metric} by {','.join(plan.keys)}",
        options=options,
        backend="spark",
        parallelism=1,
        param_names=space.names,
        source=spec.source,
    )
    return GroupSearch(plan, objective, space, options, result, [*listeners], info, resumed).run()


def _resuming(resumed: Resumed | None, options: TuneOptions) -> str:
    if resumed is None:
        return f"nbtune: no earlier search of this cell by {','.join(options.by)} in experiment '{options.experiment}'"
    return f"nbtune: resuming run {resumed.parent_run_id}: {len(resumed.groups)} groups done, skipped"


class GroupSearch:
    """One Spark job of `groupBy(...).applyInPandas`, followed from the driver until it ends or is stopped."""

    def __init__(
        self,
        plan: GroupPlan,
        objective: Objective,
        space: Any,
        options: TuneOptions,
        result: GroupsResult,
        listeners: list[Listener],
        info: SearchInfo,
        resumed: Resumed | None = None,
    ) -> None:
        self.plan, self.objective, self.space, self.options = plan, objective, space, options
        self.resumed = resumed
        self.result, self.info = result, info
        self.tag = f"nbtune-groups-{uuid.uuid4().hex[:12]}"
        self._progress: GroupProgress | None = None
        if not options.quiet and in_widget_frontend():
            from nbtune.ui._groups_dashboard import GroupDashboard  # ipywidgets only where they can show

            listeners = [*listeners, GroupDashboard()]
        elif not options.quiet:
            self._progress = GroupProgress()
        self.listeners = Listeners(listeners)
        self._tracker: Any = None
        if options.mlflow:
            from nbtune.groups._tracking import GroupTracker

            self._tracker = GroupTracker(options, info, resumed)

    def run(self) -> GroupsResult:
        """Run every group's search; keep each finished group whatever stops the rest."""
        from nbtune.spark._session import cancel_tag

        spark, result = self.plan.spark, self.result
        start = time.monotonic()
        reason: str | None = None
        job: _Job | None = None
        channel: GroupChannel | None = None

        def stop() -> None:  # also the Cancel button's hook
            cancel_tag(spark, self.tag)

        self.info.cancel_hooks.append(stop)
        try:
            layout = self._groups()
            self.listeners.search_started(self.info, result)
            if self._tracker is not None:
                self._tracker.start(result)
            if layout is not None:  # None: a --resume of a search whose every group is done
                channel = GroupChannel(self._host())
                job = self._launch(layout, channel)
                reason = self._follow(job, channel, start, stop)
        except KeyboardInterrupt:
            reason = "interrupted"
            stop()
            if job is not None:
                job.done.wait(10.0)
        finally:
            self.info.cancel_hooks.remove(stop)
            if channel is not None:
                time.sleep(0.05)  # the last groups' messages, sent as the tasks ended
                self._take(channel.drain())
                channel.close()
            reason = self._settle(job, reason)
            result.wall_time = time.monotonic() - start
            result.stop_reason = reason or "completed"
        if self._tracker is not None:
            self._tracker.finish(result)
        if self._progress is not None:
            self._progress.update(result, final=True)
        self.listeners.search_finished(result)
        counts = result.group_counts()
        if result.outcomes and not counts.get("ok") and counts.get("failed"):
            first = next(g for g in result.outcomes if g.status == "failed")
            raise SearchFailed(f"every group failed; group {result._label(first.key)!r}: {first.error}", result)
        return result

    def _host(self) -> str:
        from nbtune.spark._session import coordinator_host

        return coordinator_host(self.plan.spark)

    def _groups(self) -> Layout | None:
        """Count each group's rows (one small job), set up the outcomes; where the groups to run go (None: none)."""
        from nbtune.spark._session import default_parallelism, job_tags

        spark, keys = self.plan.spark, self.plan.keys
        with job_tags(spark, self.tag):  # this thread's small jobs: counting the groups, finding salts
            sizes = self.plan.df.groupBy(*keys).count().collect()
            if not sizes:
                raise TuneUsageError(f"--data {self.plan.data} has no rows")
            groups = [(tuple(r[k] for k in keys), int(r["count"])) for r in sizes]
            done = self.resumed.groups if self.resumed is not None else {}
            todo = [(key, rows) for key, rows in groups if group_label(keys, key) not in done]
            slots = default_parallelism(spark)
            salts = find_salts(spark, partition_count(len(todo), slots)) if todo else []
        self.result.parallelism = self.info.parallelism = slots
        layout = plan_layout(todo, slots, salts)
        self.result.outcomes = [GroupOutcome(key, rows) for key, rows in zip(layout.keys, layout.rows, strict=True)]
        for key, rows in groups:  # after the groups to run: a group's id is its place in this list
            earlier = done.get(group_label(keys, key))
            if earlier is not None:
                earlier.key, earlier.rows = key, rows
                self.result.outcomes.append(earlier)
        return layout if todo else None

    def _launch(self, layout: Layout, channel: GroupChannel) -> _Job:
        """Start the one Spark job that runs every group still to run."""
        opts = self.options
        task = GroupTask(
            objective=self.objective,
            space=self.space,
            data=self.plan.data,
            max_evals=opts.max_evals,
            algo=opts.algo,
            max_failures=opts.max_failures,
            early_stop=opts.early_stop,
            trial_timeout=opts.trial_timeout,
            log_model=opts.log_model != "none",
            first=self.space.cell_point() if opts.start_from_cell else None,
            seeds={gid: group_seed(opts.seed, key) for gid, key in enumerate(layout.keys)},
            address=channel.address,
            secret=channel.secret,
        )
        frame = laid_out(self.plan.spark, self.plan.df, self.plan.keys, layout)
        return _Job(self.plan.spark, self.tag, frame.groupBy(SALT, GID).applyInPandas(group_function(task), _schema()))

    def _follow(self, job: _Job, channel: GroupChannel, start: float, stop: Any) -> str | None:
        """Show progress until the job ends; stop it on Cancel or --timeout (and say which)."""
        deadline = start + self.options.timeout if self.options.timeout else None
        while not job.done.wait(_POLL):
            self._take(channel.drain())
            reason = None
            if self.info.cancel_event.is_set():
                reason = "cancelled"
            elif deadline is not None and time.monotonic() >= deadline:
                reason = "timeout"
            if reason is not None:
                stop()
                job.done.wait(10.0)
                return reason
            self._show()
        return None

    def _take(self, messages: list[tuple[Any, ...]]) -> None:
        """Messages from the tasks: a group started, a group finished (with its row)."""
        for kind, payload in messages:
            if kind == "started":
                outcome = self.result.outcomes[int(payload)]
                if outcome.status == "pending":
                    outcome.status = "running"
            elif kind == "done":
                self._finish(payload)

    def _finish(self, row: dict[str, Any]) -> None:
        outcome = self.result.outcomes[int(row["gid"])]
        if outcome.status in ("ok", "failed"):
            return  # already in from the channel
        outcome.finish(row)
        if self._tracker is not None:
            self._tracker.group_finished(outcome)

    def _show(self) -> None:
        self.listeners.poll()
        if self._progress is not None:
            self._progress.update(self.result)

    def _settle(self, job: _Job | None, reason: str | None) -> str | None:
        """Fold in the job's own rows (a worker that could not reach the channel); mark what never finished."""
        error: str | None = None
        if reason is None and self.info.cancel_event.is_set():  # the Cancel hook stopped the job at once
            reason = "cancelled"
        if job is not None and job.error is None:
            for row in job.rows:
                self._finish(row)
        elif job is not None and reason is None:
            error, reason = job.error, "error"
        for outcome in self.result.outcomes:
            if outcome.status in ("pending", "running"):
                outcome.status = "failed" if error else "cancelled"
                outcome.error = f"the Spark job failed: {error}" if error else f"stopped: {reason}"
        return reason


class _Job:
    """The groups' Spark job, collected on its own thread so the driver can follow and cancel it."""

    def __init__(self, spark: Any, tag: str, frame: Any) -> None:
        self.done = threading.Event()
        self.rows: list[dict[str, Any]] = []
        self.error: str | None = None
        self._spark, self._tag, self._frame = spark, tag, frame
        threading.Thread(target=self._run, name="nbtune-groups-job", daemon=True).start()

    def _run(self) -> None:
        from nbtune.spark._session import job_tags

        try:
            with job_tags(self._spark, self._tag):
                self.rows = [row.asDict() for row in self._frame.collect()]
        except Exception as exc:
            self.error = _spark_error(exc)
        finally:
            self.done.set()


def _schema() -> Any:
    from pyspark.sql.types import BinaryType, DoubleType, LongType, StringType, StructField, StructType

    types = {"long": LongType(), "double": DoubleType(), "string": StringType(), "binary": BinaryType()}
    return StructType([StructField(name, types[kind], True) for name, kind in RESULT_FIELDS])


def _spark_error(exc: BaseException) -> str:
    """The Python error Spark wrapped deep in a JVM message, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    found = [line for line in lines if "Error:" in line and "py4j" not in line.lower()]
    return (found[-1] if found else lines[0] if lines else type(exc).__name__)[:500]
