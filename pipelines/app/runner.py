"""Running the jobs of the code location from the CLI, on the local Dagster instance, so that
`smsledger sync`, `backfill` and `demo` runs show in the UI (`dagster dev`) afterwards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from assets.definitions import DAILY_JOB, DRAIN_JOB, build_definitions
from assets.options import PARTITION_RANGE_END, PARTITION_RANGE_START
from pipelines.app.errors import RunFailedError
from pipelines.config import Settings

INSTANCE_DEFAULTS = """\
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""
# The CLI prints its own progress; Dagster's step events stay in the run's logs (the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


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


def _execute(settings: Settings, job: dg.JobDefinition, name: str, **kwargs) -> dg.ExecuteInProcessResult:
    try:
        with instance(settings) as dagster_instance:
            result = job.execute_in_process(instance=dagster_instance, raise_on_error=False, **kwargs)
    except dg.DagsterError as exc:
        raise RunFailedError(f"{name}: {' '.join(str(exc).split())[:500]}") from None
    if not result.success:
        raise RunFailedError(f"{name}: {_failure_line(result)}")
    return result


def _failure_line(result: dg.ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.is_step_failure and event.step_failure_data and event.step_failure_data.error:
            error = event.step_failure_data.error
            while error.cause is not None and error.cls_name in ("DagsterExecutionStepExecutionError", "RetryRequestedFromPolicy"):
                error = error.cause
            return f"step {event.step_key} failed: {error.message.strip().splitlines()[0] if error.message.strip() else error.cls_name}"
    return "run failed"


def run_drain(settings: Settings, *, time_budget_seconds: float = 300.0, log: Callable[[str], None] = print) -> dg.ExecuteInProcessResult:
    defs = build_definitions(settings)
    job = defs.resolve_job_def(DRAIN_JOB)
    run_config = {**QUIET, "ops": {"spool__queue_pages": {"config": {"time_budget_seconds": time_budget_seconds}}}}
    result = _execute(settings, job, DRAIN_JOB, run_config=run_config)
    log(f"drained queues and loaded raw tables (run {result.run_id[:8]})")
    return result


def run_days(settings: Settings, first: dt.date, last: dt.date, *, log: Callable[[str], None] = print) -> dg.ExecuteInProcessResult:
    """Materialize the daily partitions [first, last] in a single run (a single-run backfill)."""
    if last < first:
        raise ValueError(f"end {last} is before start {first}")
    if first < settings.start_date:
        raise ValueError(f"{first} is before SMSLEDGER_START_DATE ({settings.start_date}); set it earlier to backfill")
    defs = build_definitions(settings)
    job = defs.resolve_job_def(DAILY_JOB)
    tags = {PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()}
    result = _execute(settings, job, f"{DAILY_JOB} {first}..{last}", tags=tags, run_config=QUIET)
    log(f"materialized {first}..{last} (run {result.run_id[:8]})")
    return result
