"""Running the jobs of the code location from the CLI, on the local Dagster instance, so that
`smsledger sync`, `backfill` and `demo` runs show in the UI (`dagster dev`) afterwards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.utils import make_new_run_id

from assets.definitions import DAILY_JOB, DRAIN_JOB, build_definitions
from assets.housekeeping import liveness_tags, release_dead_runs
from assets.options import PARTITION_RANGE_END, PARTITION_RANGE_START, WAREHOUSE_POOL
from pipelines.app.errors import CommandError, RunFailedError, on_stop
from pipelines.config import Settings

INSTANCE_DEFAULTS = """\
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""
# The CLI prints its own lines; Dagster's step events and stack traces stay in the run's logs (the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def dagster_home(settings: Settings, root: Path | None = None) -> Path:
    """The instance folder as the README explains: DAGSTER_HOME, else the folder holding
    dagster.yaml (the repository root); outside a checkout, a folder under data/ with a copy of
    the packaged defaults."""
    if settings.dagster_home is not None:
        return settings.dagster_home
    root = root or Path.cwd()
    home = root if (root / "dagster.yaml").is_file() else root / "data" / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        # Outside a checkout: storage under this folder, and the warehouse pool of one writer.
        (home / "dagster.yaml").write_text(INSTANCE_DEFAULTS)
    return home


def instance(settings: Settings) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(dagster_home(settings).resolve()))


def _execute(settings: Settings, job: dg.JobDefinition, name: str, log: Callable[[str], None],
             **kwargs) -> dg.ExecuteInProcessResult:
    """Run `job` in this process on the local instance. Runs whose process died are released
    first; while this run waits for the warehouse pool it says whom it waits for; a stop request
    (Ctrl-C, SIGTERM) marks it failed and frees its slots before the process ends.

    The run executes in a worker thread so that the main thread keeps the CLI's signal handlers:
    on the main thread Dagster would capture SIGINT/SIGTERM itself and, while a step waits for a
    pool slot, never look at them."""
    run_id = make_new_run_id()
    outcome: dict[str, object] = {}
    try:
        with instance(settings) as dagster_instance:
            for released in release_dead_runs(dagster_instance):
                log(released.line())
            tags = {**kwargs.pop("tags", {}), **liveness_tags()}

            def execute() -> None:
                try:
                    outcome["result"] = job.execute_in_process(instance=dagster_instance, raise_on_error=False,
                                                               run_id=run_id, tags=tags, **kwargs)
                except BaseException as exc:  # handed to the main thread
                    outcome["error"] = exc

            def mark_stopped() -> None:
                run = dagster_instance.get_run_by_id(run_id)
                if run is not None and run.status not in FINISHED_STATUSES:
                    dagster_instance.report_run_failed(run, "smsledger: stopped by Ctrl-C or SIGTERM")
                dagster_instance.event_log_storage.free_concurrency_slots_for_run(run_id)

            unregister = on_stop(mark_stopped)
            try:
                with _PoolWatch(dagster_instance, run_id, log):
                    worker = threading.Thread(target=execute, name=f"smsledger-run-{run_id[:8]}", daemon=True)
                    worker.start()
                    while worker.is_alive():
                        worker.join(0.2)
            finally:
                unregister()
    except dg.DagsterError as exc:
        raise RunFailedError(f"{name}: {' '.join(str(exc).split())[:500]}") from None
    if "error" in outcome:
        error = outcome["error"]
        if isinstance(error, dg.DagsterError):
            raise RunFailedError(f"{name}: {' '.join(str(error).split())[:500]}") from None
        raise error
    result = outcome["result"]
    if not result.success:
        line, cause = _failure(result)
        raise RunFailedError(f"{name}: {line}", cause)
    return result


class _PoolWatch:
    """A thread that notices when the run waits for a slot of the warehouse pool held by another
    run, says so (once, then every minute) naming the holder, and releases the holder if its
    process dies meanwhile."""

    def __init__(self, dagster_instance: dg.DagsterInstance, run_id: str, log: Callable[[str], None],
                 interval: float = 2.0):
        self._instance, self._run_id, self._log, self._interval = dagster_instance, run_id, log, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="smsledger-pool-watch", daemon=True)

    def __enter__(self) -> _PoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        said_at = None
        waiting_since = None
        while not self._stop.wait(self._interval):
            try:
                info = self._instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
            except Exception:  # the watch only informs; it must never break the run
                return
            ours_waiting = any(p.run_id == self._run_id and p.assigned_timestamp is None for p in info.pending_steps)
            others = [(s.run_id, s.step_key) for s in info.claimed_slots if s.run_id != self._run_id]
            if not (ours_waiting and others):
                waiting_since = said_at = None
                continue
            # The holder may have died while we waited: release it, and the claim goes through.
            for released in release_dead_runs(self._instance):
                self._log(released.line())
            now = time.monotonic()
            waiting_since = waiting_since or now
            if said_at is None or now - said_at >= 60:
                holders = ", ".join(f"run {run_id[:8]} (step {step})" for run_id, step in others)
                self._log(f"waiting {now - waiting_since + self._interval:.0f}s for the warehouse (pool {WAREHOUSE_POOL}), "
                          f"held by {holders}; Ctrl-C stops waiting")
                said_at = now


def _failure(result: dg.ExecuteInProcessResult) -> tuple[str, str | None]:
    """The first failed step's one line, and the cause it labelled itself with, if any."""
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            data = event.step_failure_data
            error = data.error
            while error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "RetryRequestedFromPolicy"):
                error = error.cause
            text = error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name
            cause = data.user_failure_data.metadata.get("cause") if data.user_failure_data else None
            return f"step {event.step_key} failed: {text}", (cause.value if cause is not None else None)
    return "run failed", None


@dataclasses.dataclass
class Outcome:
    """What a run found wrong without failing: one line per failed or warned check."""

    run_id: str
    errors: list[str] = dataclasses.field(default_factory=list)  # checks of severity ERROR that failed
    warnings: list[str] = dataclasses.field(default_factory=list)

    def lines(self) -> list[str]:
        return [f"error: {line}" for line in self.errors] + [f"warning: {line}" for line in self.warnings]


def _outcome(result: dg.ExecuteInProcessResult) -> Outcome:
    outcome = Outcome(result.run_id)
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        where = f" ({evaluation.partition})" if getattr(evaluation, "partition", None) else ""
        line = f"{evaluation.asset_key.to_user_string()} check {evaluation.check_name}{where}: {evaluation.description or 'failed'}"
        (outcome.errors if evaluation.severity == dg.AssetCheckSeverity.ERROR else outcome.warnings).append(line)
    return outcome


def last_complete_day(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the partition zone: the latest daily partition that exists."""
    now = now or dt.datetime.now(dt.UTC)
    return now.astimezone(settings.tz).date() - dt.timedelta(days=1)


def check_days(settings: Settings, first: dt.date, last: dt.date) -> None:
    """Refuse days that are not daily partitions, before anything is done for them."""
    if last < first:
        raise CommandError(f"the end {last} is before the start {first}")
    if first < settings.start_date:
        raise CommandError(f"{first} is before SMSLEDGER_START_DATE ({settings.start_date}); set it earlier to "
                           "backfill that far")
    latest = last_complete_day(settings)
    if last > latest:
        raise CommandError(f"{last} has not ended yet in {settings.timezone} (SMSLEDGER_TIMEZONE); the latest "
                           f"complete day is {latest}")


def run_drain(settings: Settings, *, time_budget_seconds: float = 300.0, log: Callable[[str], None] = print) -> Outcome:
    defs = build_definitions(settings)
    job = defs.resolve_job_def(DRAIN_JOB)
    run_config = {**QUIET, "ops": {"spool__queue_pages": {"config": {"time_budget_seconds": time_budget_seconds}}}}
    result = _execute(settings, job, DRAIN_JOB, log, run_config=run_config)
    log(f"drained queues and loaded raw tables (run {result.run_id[:8]})")
    return _outcome(result)


def run_days(settings: Settings, first: dt.date, last: dt.date, *, log: Callable[[str], None] = print) -> Outcome:
    """Materialize the daily partitions [first, last] in a single run (a single-run backfill)."""
    check_days(settings, first, last)
    defs = build_definitions(settings)
    job = defs.resolve_job_def(DAILY_JOB)
    tags = {PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()}
    result = _execute(settings, job, f"{DAILY_JOB} {first}..{last}", log, tags=tags, run_config=QUIET)
    log(f"materialized {first}..{last} (run {result.run_id[:8]})")
    return _outcome(result)
