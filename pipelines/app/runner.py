"""Running the jobs of the code location from the CLI, on the local Dagster instance, so that
`smsledger sync`, `backfill` and `demo` runs show in the UI (`dagster dev`) afterwards."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import dagster as dg
from dagster._core.storage.dagster_run import FINISHED_STATUSES
from dagster._core.utils import make_new_run_id

from assets.definitions import DAILY_JOB, DRAIN_JOB, build_definitions
from assets.housekeeping import liveness_tags, release_dead_runs
from assets.options import PARTITION_RANGE_END, PARTITION_RANGE_START
from pipelines.app.errors import CommandError, RunFailedError, on_stop
from pipelines.app.watch import Output, RunWatch
from pipelines.config import Settings, is_lake

INSTANCE_DEFAULTS = """\
concurrency:
  pools:
    default_limit: 1
python_logs:
  managed_python_loggers: [pipelines]
  python_log_level: INFO
telemetry:
  enabled: false
"""
# The CLI prints its own lines; Dagster's step events and stack traces stay in the run's logs (the UI),
# and so do the library's own log lines (a retry, a lost pull): the instance captures the
# `pipelines` loggers (python_logs in dagster.yaml), and nothing prints them on the console.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
logging.getLogger("pipelines").addHandler(logging.NullHandler())

# The marts that read other days than their own: a reply is attributed to a message of the days
# before it (marts/replies), and a message's replies count under its day whatever day they came
# (marts/conversion_daily). Writers that build a range in parts at once leave these for one run
# over the whole range, once every part is built.
CROSS_DAY_MARTS = (dg.AssetKey(["marts", "replies"]), dg.AssetKey(["marts", "conversion_daily"]))


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
    dagster_instance = dg.DagsterInstance.from_config(str(dagster_home(settings).resolve()))
    if not dagster_instance.get_python_log_dagster_handler_config():
        # Dagster 1.13 calls logging.config.dictConfig at the start of every run, with or without
        # a dagster_handler_config, to build no handler here; dictConfig closes every handler of
        # the process, and deadlocks against a run logging in another thread (the parts of
        # `backfill --writers N` are runs in threads: both hung, futex-waiting, under py-spy).
        dagster_instance.get_yaml_python_handlers = lambda: []
    return dagster_instance


def _execute(settings: Settings, job: dg.JobDefinition, name: str, out: Output,
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
                out.line(released.line())
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
                with RunWatch(dagster_instance, run_id, out):
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
    """Refuse days that are not daily partitions, and a price table that does not parse (its
    PriceTableError names the line), before anything is done for them."""
    if settings.prices_path is not None:
        from pipelines.warehouse.prices import read_prices

        read_prices(settings.prices_path)
    if last < first:
        raise CommandError(f"the end {last} is before the start {first}")
    if first < settings.start_date:
        raise CommandError(f"{first} is before SMSLEDGER_START_DATE ({settings.start_date}); set it earlier to "
                           "backfill that far")
    latest = last_complete_day(settings)
    if last > latest:
        raise CommandError(f"{last} has not ended yet in {settings.timezone} (SMSLEDGER_TIMEZONE); the latest "
                           f"complete day is {latest}")


def check_writers(settings: Settings, writers: int) -> None:
    """Several writers at once only on a lake."""
    if writers < 1:
        raise CommandError(f"--writers {writers}: give 1 or more")
    if writers > 1 and not is_lake(settings.warehouse):
        raise CommandError(f"--writers {writers}: SMSLEDGER_WAREHOUSE is a DuckDB file, which one process writes at a "
                           "time; several writers need a lake (ducklake:postgres:..., see README)")


def run_drain(settings: Settings, *, time_budget_seconds: float = 300.0, log: Callable[[str], None] = print) -> Outcome:
    defs = build_definitions(settings)
    job = defs.resolve_job_def(DRAIN_JOB)
    run_config = {**QUIET, "ops": {"spool__queue_pages": {"config": {"time_budget_seconds": time_budget_seconds}}}}
    out = Output(log)
    out.line(f"draining the queues and loading raw tables (job {DRAIN_JOB}) ...")
    result = _execute(settings, job, DRAIN_JOB, out, run_config=run_config)
    for line in drain_summary(_materializations(result)):
        log(line)
    return _outcome(result)


def run_days(settings: Settings, first: dt.date, last: dt.date, *, writers: int = 1,
             log: Callable[[str], None] = print) -> Outcome:
    """Materialize the daily partitions [first, last] in a single run (a single-run backfill), or,
    on a lake with `writers` above 1, by that many runs at once, each over its part of the days
    (see `_run_days_in_parts`)."""
    check_days(settings, first, last)
    check_writers(settings, writers)
    defs = build_definitions(settings)
    job = defs.resolve_job_def(DAILY_JOB)
    out = Output(log)
    parts = _parts(first, last, writers)
    if len(parts) > 1:
        result_found, outcome, run_ids = _run_days_in_parts(settings, job, parts, out)
    else:
        tags = {PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()}
        out.line(f"building {first}..{last} (job {DAILY_JOB}, one run) ...")
        result = _execute(settings, job, f"{DAILY_JOB} {first}..{last}", out, tags=tags, run_config=QUIET)
        result_found, outcome, run_ids = _materializations(result), _outcome(result), result.run_id
    for line in days_summary(result_found, first, last, run_ids):
        log(line)
    return outcome


def _parts(first: dt.date, last: dt.date, writers: int) -> list[tuple[dt.date, dt.date]]:
    """[first, last] cut into at most `writers` consecutive ranges of (nearly) equal days."""
    days = (last - first).days + 1
    count = max(1, min(writers, days))
    bounds = [first + dt.timedelta(days=days * i // count) for i in range(count + 1)]
    return [(bounds[i], bounds[i + 1] - dt.timedelta(days=1)) for i in range(count)]


def _run_days_in_parts(settings: Settings, job: dg.JobDefinition, parts: list[tuple[dt.date, dt.date]],
                       out: Output) -> tuple[dict, Outcome, str]:
    """One run per part of the days, all at once (each in its own thread, with its own
    connections: a lake takes the writers together and re-runs a commit that collided), every
    asset but the cross-day marts; then one run of those over the whole range. Every asset is
    built from upstream assets complete for the days it reads, as in one run over the range, so
    the tables come out the same. The Dagster pool (the instance's limit) still bounds how many
    steps write at once."""
    first, last = parts[0][0], parts[-1][1]
    everything = job.asset_layer.selected_asset_keys
    per_part = sorted(everything - set(CROSS_DAY_MARTS), key=str)
    out.line(f"building {first}..{last} with {len(parts)} writers at once (job {DAILY_JOB}: one run per part, "
             f"{', '.join(f'{a}..{b}' for a, b in parts)}; then the cross-day marts in one run) ...")
    results: dict[tuple[dt.date, dt.date], dg.ExecuteInProcessResult] = {}
    errors: list[BaseException] = []

    def build(part: tuple[dt.date, dt.date]) -> None:
        a, b = part
        try:
            results[part] = _execute(settings, job, f"{DAILY_JOB} {a}..{b}", _Prefixed(out, f"[{a}..{b}] "),
                                     tags={PARTITION_RANGE_START: a.isoformat(), PARTITION_RANGE_END: b.isoformat()},
                                     asset_selection=per_part, run_config=QUIET)
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=build, args=(part,), name=f"smsledger-part-{part[0]}", daemon=True)
               for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        while thread.is_alive():
            thread.join(0.2)  # the main thread keeps the CLI's signal handlers (see `_execute`)
    if errors:
        raise errors[0]
    tags = {PARTITION_RANGE_START: first.isoformat(), PARTITION_RANGE_END: last.isoformat()}
    cross_day = _execute(settings, job, f"{DAILY_JOB} {first}..{last}", _Prefixed(out, f"[{first}..{last}] "),
                         tags=tags, asset_selection=list(CROSS_DAY_MARTS), run_config=QUIET)
    found: dict = {}
    outcome = Outcome(cross_day.run_id)
    for result in [*(results[part] for part in parts), cross_day]:
        found.update(_materializations(result))
        part_outcome = _outcome(result)
        outcome.errors += part_outcome.errors
        outcome.warnings += part_outcome.warnings
    run_ids = ", ".join(result.run_id[:8] for result in [*(results[part] for part in parts), cross_day])
    return found, outcome, run_ids


class _Prefixed:
    """An Output whose lines name the part of the days they are about."""

    def __init__(self, out: Output, prefix: str):
        self._out, self._prefix = out, prefix

    def line(self, text: str) -> None:
        self._out.line(self._prefix + text.lstrip())

    def status(self, text: str) -> None:
        self._out.status(self._prefix + text.lstrip())

    def done(self) -> None:
        self._out.done()


def _materializations(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str | None], dict[str, object]]:
    """The metadata of each materialization of the run, as plain values, by (asset, partition)."""
    found = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        found[(materialization.asset_key.to_user_string(), materialization.partition)] = {
            key: getattr(value, "value", value) for key, value in materialization.metadata.items()}
    return found


def drain_summary(found: dict[tuple[str, str | None], dict[str, object]]) -> list[str]:
    """What a drain run did, in a few lines."""
    lines = []
    pages = found.get(("spool/queue_pages", None))
    if pages is not None:
        stopped = {pages.get(f"{name}_stopped_by") for name in ("receipts", "replies")} - {None, "drained"}
        note = "; the queues were drained" if not stopped else \
            f"; stopped by {', '.join(sorted(str(s).replace('_', ' ') for s in stopped))}: the queues keep the rest"
        apps = pages.get("applications") or {}
        of_apps = f" of {len(apps)} applications" if len(apps) > 1 else ""
        lines.append(f"pulled {pages.get('receipts_pulled', 0):,} receipts and {pages.get('replies_pulled', 0):,} "
                     f"replies{of_apps}{note}")
        if len(apps) > 1:
            for app, got in apps.items():
                parts = [f"{name} refused ({got[name + '_error']})" if name + "_error" in got
                         else f"{got.get(name + '_pulled', 0):,} {name}" for name in ("receipts", "replies")]
                lines.append(f"  application {app}: {', '.join(parts)}")
    records = found.get(("raw/queue_records", None))
    if records is not None:
        lost = records.get("indeterminate_pulls", 0)
        lines.append(f"loaded {records.get('records', 0):,} records: {records.get('new_records', 0):,} new, "
                     f"{records.get('duplicate_records', 0):,} repeated, {records.get('quarantined_rows', 0):,} "
                     "quarantined" + (f"; {lost} pulls broke on the way (records may be lost: gap filling looks "
                                      "for them)" if lost else ""))
    for kind, variable in (("sends", "SMSLEDGER_SENDS_PATH"), ("conversions", "SMSLEDGER_CONVERSIONS_PATH")):
        files = found.get((f"raw/{kind}", None))
        if files is None:
            continue
        if not files.get("configured"):
            lines.append(f"no {kind} files ({variable} is not set)")
        elif files.get("loaded_files"):
            lines.append(f"{kind} files: {files.get('rows', 0):,} rows from {files['loaded_files']} new or changed "
                         f"files, {files.get('quarantined_rows', 0):,} quarantined")
        else:
            lines.append(f"{kind} files: unchanged")
    return lines


def days_summary(found: dict[tuple[str, str | None], dict[str, object]], first: dt.date, last: dt.date,
                 run_id: str) -> list[str]:
    """What a run over days built: per day its messages and delivery. `run_id`: the run, or the
    runs of a build in parts (their short ids)."""
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    runs = f"runs {run_id}" if "," in run_id else f"run {run_id[:8]}"
    lines = [f"built {first}..{last} ({len(days)} day{'s' if len(days) != 1 else ''}, {runs}):",
             "  day          messages  submitted  delivered   failed  pending  delivery"]
    empty = []
    for day in days:
        m = found.get(("marts/message_status", day.isoformat()))
        if not m or not m.get("dagster/row_count"):
            empty.append(day.isoformat())
            continue
        rate = m.get("delivery_rate")
        lines.append(f"  {day}  {m['dagster/row_count']:>9,}  {m.get('submitted', 0):>9,}  {m.get('delivered', 0):>9,}"
                     f"  {m.get('failed', 0):>7,}  {m.get('pending', 0):>7,}  "
                     + (f"{100 * rate:7.1f}%" if rate is not None else "     n/a"))
    if empty:
        lines.append(f"  no messages on {', '.join(empty)}: the provider and the sends log hold nothing for "
                     f"{'that day' if len(empty) == 1 else 'those days'}")
    return lines
