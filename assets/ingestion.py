"""Ingestion: the provider's queues into the spool and raw tables, the sending application's
files, signatures and templates, hourly provider statistics, and gap filling by phone number."""

# No `from __future__ import annotations`: Dagster reads the annotations of asset functions
# (config, resources, context) when it builds the definitions.
import contextlib
import datetime as dt

import dagster as dg

from assets import options
from assets.reporting import report_days
from assets.options import TRANSIENT_RETRY, WAREHOUSE_POOL
from pipelines.ingest.dimensions import fetch_dimensions, store_dimensions
from pipelines.ingest.drain import drain_queue
from pipelines.ingest.gapfill import DEFAULT_CALL_BUDGET, GapFillReport, run_gap_fill
from pipelines.days import days_of
from assets.resources import MetricsConfig, PersonalDataConfig, SmsApiResource, SourcesResource, WarehouseResource
from pipelines.ingest.statistics import fetch_statistics, settled_hours, store_statistics
from pipelines.tencent import actions as A
from pipelines.tencent.errors import TencentCloudError, TransportError, Unreachable
from pipelines.warehouse.db import sql_text
from pipelines.warehouse.prices import PriceTableError, read_prices, store_prices
from pipelines.warehouse.retention import purge_personal_data
from pipelines.warehouse.sending_app import load_source_files


QUEUE_DRAINED = "queue_drained"
STATISTICS_COMPLETE = "statistics_complete"
NAMES_LISTED = "names_listed"

# The `cause` of a step's failure, for the CLI: an endpoint that cannot be reached stops a sync.
UNREACHABLE = "unreachable"


@contextlib.contextmanager
def provider_errors():
    """A provider error that a retry cannot fix (credentials, permissions, parameters) or an
    endpoint that cannot be reached fails the step at once with its one line; transient ones are
    left to the retry policy."""
    try:
        yield
    except Unreachable as exc:
        raise dg.Failure(description=str(exc), allow_retries=False, metadata={"cause": UNREACHABLE}) from None
    except TencentCloudError as exc:
        if exc.retryable:
            raise
        raise dg.Failure(description=str(exc), allow_retries=False) from None


class DrainConfig(dg.Config):
    time_budget_seconds: float = 300.0


@dg.asset(
    key=["spool", "queue_pages"],
    group_name="ingestion",
    kinds={"python"},
    check_specs=[dg.AssetCheckSpec(QUEUE_DRAINED, asset=["spool", "queue_pages"],
                                   description="Both queues were pulled until empty or until the time budget; a drain "
                                               "stopped by failures or a provider error fails this check.")],
)
def queue_pages(context: dg.AssetExecutionContext, config: DrainConfig, sms_api: SmsApiResource,
                warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Raw responses of PullSmsSendStatus and PullSmsReplyStatus of every application, written to
    the spool (fsynced, named with their application) before parsing, until the queues are empty or
    the time budget is spent. Needs no database: it keeps working while another process holds the
    warehouse. A queue that cannot be drained (a provider error such as an application id the
    account does not own, too many failed pulls in a row) fails the check `queue_drained`, named
    with its application; the other queues and applications are drained all the same, and what was
    spooled still loads in the next step."""
    spool = warehouse.spool()
    totals: dict[str, int] = {}
    stopped_by: dict[str, str] = {}
    by_app: dict[str, dict[str, object]] = {}
    problems: list[str] = []
    errors = 0
    with provider_errors():
        for app in sms_api.sdk_app_ids:
            by_app[app] = {}
            with sms_api.client(app) as client:
                for action, name in ((A.PULL_SEND_STATUS, "receipts"), (A.PULL_REPLY_STATUS, "replies")):
                    # Each queue on its own: replies not enabled for the application must not stop
                    # receipts, nor one application's refusal the others.
                    try:
                        report = drain_queue(client, spool, action, time_budget_seconds=config.time_budget_seconds,
                                             workers=sms_api.workers)
                    except TencentCloudError as exc:
                        problem = f"application {app}: {action}: {exc}"
                        context.log.error(problem)
                        problems.append(problem)
                        by_app[app][f"{name}_error"] = exc.code
                        stopped_by.setdefault(name, "error")
                        errors += 1
                        continue
                    context.log.info(f"application {app}: {action}: {report.records} records in {report.pulls} "
                                     f"pulls ({report.pulls_per_second:.0f}/s), stopped by {report.stopped_by}")
                    counts = {
                        f"{name}_pulled": report.records,
                        f"{name}_pulls": report.pulls,
                        f"{name}_indeterminate_pulls": report.indeterminate,
                        f"{name}_throttled": report.throttled,
                        f"{name}_failed_pulls": report.transient_errors + report.unreachable,
                    }
                    for key, n in counts.items():
                        totals[key] = totals.get(key, 0) + n
                    by_app[app].update(counts, **{f"{name}_stopped_by": report.stopped_by})
                    if report.stopped_by != "drained" or name not in stopped_by:
                        stopped_by[name] = report.stopped_by
                    if report.stopped_by in ("failures", "error"):
                        failed = report.indeterminate + report.throttled + report.transient_errors + report.unreachable
                        problem = (f"application {app}: {action}: the drain stopped on failures ({failed} failed "
                                   f"pulls: {report.indeterminate} indeterminate, {report.throttled} throttled, "
                                   f"{report.transient_errors + report.unreachable} other); {report.records:,} records "
                                   "spooled, the queue keeps the rest for the next drain")
                        context.log.warning(problem)
                        problems.append(problem)
    metadata: dict[str, dg.RawMetadataValue] = {
        **totals, **{f"{name}_stopped_by": reason for name, reason in stopped_by.items()},
        "applications": dg.MetadataValue.json(by_app),
        "problems": "\n".join(problems) or "none",
    }
    if errors == 2 * len(sms_api.sdk_app_ids):
        # Nothing was pulled at all (credentials, the application ids): no reason to go on.
        raise dg.Failure(description="; ".join(problems), metadata=metadata, allow_retries=False)
    return dg.MaterializeResult(metadata=metadata, check_results=[dg.AssetCheckResult(
        check_name=QUEUE_DRAINED, passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        description="; ".join(problems) or None, metadata={"problems": len(problems)},
    )])


@dg.asset(
    key=["raw", "queue_records"],
    deps=[queue_pages],
    group_name="ingestion",
    kinds={"duckdb", "polars"},
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
def raw_queue_records(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """raw.send_status and raw.reply_status: every spooled response loaded in one transaction per
    group of files with the batch ledger raw.batches; a spool file is removed only after its
    transaction commits, and a batch already in the ledger is never loaded twice."""
    with warehouse.connect() as con:
        report = warehouse.load_spool(con)
        totals = con.execute(sql_text("reports/raw_totals")).fetchone()
        # The days whose marts pushed receipts change: the sensor pushed_receipt_days rebuilds them.
        pushed_days = [day.isoformat() for (day,) in con.execute(
            sql_text("reports/pushed_send_days"),
            {"batch_ids": report.pushed_batches, "timezone": warehouse.partition_timezone}).fetchall()
        ] if report.pushed_batches else []
    return dg.MaterializeResult(metadata={
        "pushed_batches": len(report.pushed_batches),
        "pushed_send_days": dg.MetadataValue.json(pushed_days),
        "batches_loaded": report.batches,
        "records": report.records,
        "new_records": report.new_records,
        "duplicate_records": report.duplicates,
        "quarantined_rows": report.quarantined,
        "indeterminate_pulls": report.indeterminate,
        "error_responses": report.errors,
        "raw_send_status_rows": totals[0],
        "raw_reply_status_rows": totals[1],
        "raw_quarantine_rows": totals[2],
    })


class GapFillConfig(dg.Config):
    call_budget: int = DEFAULT_CALL_BUDGET  # by-number calls per run (20/s documented); the rest waits for the next run


@dg.asset(
    key=["raw", "gap_fill"],
    deps=[raw_queue_records, ["raw", "sends"]],
    group_name="ingestion",
    kinds={"duckdb", "python"},
    pool=WAREHOUSE_POOL,
    retry_policy=TRANSIENT_RETRY,
)
def gap_fill(context: dg.AssetExecutionContext, config: GapFillConfig, sms_api: SmsApiResource,
             warehouse: WarehouseResource, metrics: MetricsConfig) -> dg.MaterializeResult:
    """Records that indeterminate queue pulls (and drains that died) took off the queues, asked
    again by phone number: one search per loss, bounded by what the lost pull can have held (its
    Limit, and the record times between the pulls around it), within a budget of calls per run
    (the rest is resumed next run); a backlog is not a loss and asks nothing. Pages are loaded
    like queue responses (pipelines/ingest/gapfill.py)."""
    spool = warehouse.spool()
    report, refused = GapFillReport(), []
    for app in sms_api.sdk_app_ids:
        # One application after the other, within the run's budget of calls; one the provider
        # refuses does not stop the others' searches.
        try:
            with provider_errors(), sms_api.client(app) as client:
                report.add(run_gap_fill(warehouse.connect, client, spool, budget=config.call_budget - report.calls,
                                        workers=sms_api.workers, reply_window_hours=metrics.reply_window_hours,
                                        load=warehouse.load_spool))
        except dg.Failure as failure:
            if failure.metadata.get("cause") is not None or len(sms_api.sdk_app_ids) == 1:
                raise
            refused.append(f"application {app}: {failure.description}")
            context.log.error(refused[-1])
    if len(refused) == len(sms_api.sdk_app_ids):
        raise dg.Failure(description="; ".join(refused), allow_retries=False)
    if report.calls:
        context.log.info(f"gap filling: {report.calls} by-number calls for {report.lost_pulls_searched} lost pulls "
                         f"(up to {report.possible_lost_records} records): {report.records_found} found, "
                         f"{report.new_records} new; {report.searches_left} searches left for the next run")
    if report.beyond_retention:
        context.log.warning(f"{report.beyond_retention} lost pulls are older than the provider's 7-day by-number "
                            "retention; their records cannot be asked for")
    return dg.MaterializeResult(metadata={**report.metadata(), "refused": "\n".join(refused) or "none"})


@dg.multi_asset(
    specs=[
        dg.AssetSpec(["raw", "sends"], description="The sending application's SendSms log (SMSLEDGER_SENDS_PATH).",
                     kinds={"duckdb"}, group_name="ingestion"),
        dg.AssetSpec(["raw", "conversions"], description="Conversion events (SMSLEDGER_CONVERSIONS_PATH).",
                     kinds={"duckdb"}, group_name="ingestion"),
    ],
    pool=WAREHOUSE_POOL,
)
def sending_app_records(context: dg.AssetExecutionContext, sources: SourcesResource, warehouse: WarehouseResource):
    """raw.sends and raw.conversions from NDJSON, CSV or Parquet files. Both are optional; an
    unchanged file is not read again, an appended one from where it ended; rows are inserted
    once per record key; a bad row goes to raw.quarantine and its file is named."""
    with warehouse.connect() as con:
        for kind, pattern in (("sends", sources.sends_path), ("conversions", sources.conversions_path)):
            report = load_source_files(con, kind, pattern)
            for problem in report.problems:
                context.log.warning(problem)
            if not pattern:
                context.log.warning(f"no {kind} file configured (SMSLEDGER_{kind.upper()}_PATH): "
                                    + ("delivery rates per message need the sends log; the provider's statistics stand in"
                                       if kind == "sends" else "conversion rates cannot be computed"))
            yield dg.MaterializeResult(asset_key=["raw", kind], metadata={
                "configured": bool(pattern),
                "files": report.files,
                "loaded_files": report.loaded_files,
                "unchanged_files": report.unchanged_files,
                "records_read": report.records,
                "rows": report.rows,
                "duplicate_records": report.duplicates,
                "quarantined_rows": report.quarantined,
                "problems": "\n".join(report.problems) or "none",
            })


@dg.asset(key=["raw", "prices"], group_name="ingestion", kinds={"duckdb"}, pool=WAREHOUSE_POOL)
def prices(context: dg.AssetExecutionContext, sources: SourcesResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """raw.prices: the unit prices of SMSLEDGER_PRICES (a CSV of region, message_type, unit_price,
    currency, valid_from), replaced whole at every run; empty without the variable (costs stay
    null). A file with a line that is not a price is refused whole, naming the line, and the
    prices loaded before stay."""
    frame = None
    if sources.prices_path:
        try:
            frame = read_prices(sources.prices_path)
        except PriceTableError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
    else:
        context.log.info("no price table (SMSLEDGER_PRICES): fee counts stay, costs are null")
    with warehouse.connect() as con:
        stored = store_prices(con, frame)
    return dg.MaterializeResult(metadata={
        "configured": bool(sources.prices_path),
        "prices": stored,
        "currencies": ", ".join(sorted(set(frame["currency"]))) if stored else "none",
    })


@dg.asset(key=["raw", "personal_data_purge"], deps=[raw_queue_records, gap_fill, ["raw", "sends"]],
          group_name="ingestion", kinds={"duckdb"}, pool=WAREHOUSE_POOL)
def personal_data_purge(context: dg.AssetExecutionContext, warehouse: WarehouseResource, metrics: MetricsConfig,
                        personal_data: PersonalDataConfig) -> dg.MaterializeResult:
    """Phone numbers in raw and staging older than SMSLEDGER_PII_RETENTION_DAYS made null (a
    reply's record_key too), the numbers gap filling asked deleted, quarantined payloads cleared;
    reply texts past the rebuild window kept, kept for opt-outs only, or dropped per
    SMSLEDGER_REPLY_TEXT. Each is counted in the metadata (pipelines/warehouse/retention.py)."""
    now = dt.datetime.now(dt.UTC)
    numbers_before = (now - dt.timedelta(days=personal_data.retention_days)
                      if personal_data.retention_days is not None else None)
    texts_before = numbers_before or now - dt.timedelta(days=personal_data.minimum_retention_days)
    with warehouse.connect() as con:
        report = purge_personal_data(con, numbers_before=numbers_before, texts_before=texts_before,
                                     reply_text=personal_data.reply_text, opt_out_words=metrics.opt_out_words)
    if report.total:
        context.log.info(f"personal data: {sum(report.rows.values()):,} rows lost their numbers, "
                         f"{sum(report.reply_texts.values()):,} reply texts dropped")
    return dg.MaterializeResult(metadata={
        "retention_days": personal_data.retention_days if personal_data.retention_days is not None else "unset",
        "numbers_before": numbers_before.isoformat() if numbers_before else "unset",
        "reply_text": personal_data.reply_text,
        **{f"numbers_purged_{table.replace('.', '_')}": n for table, n in report.rows.items()},
        **{f"reply_texts_dropped_{table.replace('.', '_')}": n for table, n in report.reply_texts.items()},
        "gap_fill_calls_deleted": report.gap_fill_calls_deleted,
        "quarantine_payloads_cleared": report.quarantine_payloads,
        # on DuckLake: the snapshots and files that still held purged values (time travel ends at the purge)
        "lake_snapshots_expired": report.lake_snapshots_expired,
        "lake_files_deleted": report.lake_files_deleted,
    })


@dg.asset(key=["raw", "signs_and_templates"], group_name="ingestion", kinds={"duckdb"}, pool=WAREHOUSE_POOL,
          check_specs=[dg.AssetCheckSpec(NAMES_LISTED, asset=["raw", "signs_and_templates"],
                                         description="The signature and template lists could be read.")])
def signs_and_templates(context: dg.AssetExecutionContext, sms_api: SmsApiResource,
                        warehouse: WarehouseResource) -> dg.MaterializeResult:
    """raw.signs and raw.templates from DescribeSmsSignList / DescribeSmsTemplateList. Optional:
    personal accounts and sub-account keys may not list them, which only costs the names, so no
    failure here fails the run; it shows as a warning of the check `names_listed`."""
    try:
        with sms_api.client() as client:
            signs, templates = fetch_dimensions(client)
    except (TencentCloudError, TransportError) as exc:
        context.log.warning(f"signatures and templates not listed: {exc}")
        return dg.MaterializeResult(metadata={"signs": 0, "templates": 0, "error": str(exc)}, check_results=[
            dg.AssetCheckResult(check_name=NAMES_LISTED, passed=False, severity=dg.AssetCheckSeverity.WARN,
                                description=f"signatures and templates not listed: {exc}")])
    with warehouse.connect() as con:
        report = store_dimensions(con, signs, templates)
    return dg.MaterializeResult(metadata={"signs": report.signs, "templates": report.templates},
                                check_results=[dg.AssetCheckResult(check_name=NAMES_LISTED, passed=True)])


def daily_assets(partitions: dg.DailyPartitionsDefinition):
    """The daily-partitioned ingestion assets (built per partitions definition)."""

    @dg.asset(key=["raw", "statistics_hourly"],
              check_specs=[dg.AssetCheckSpec(STATISTICS_COMPLETE, asset=["raw", "statistics_hourly"],
                                             description="Every hour of the days has the provider's statistics.")],
              **options.daily(partitions, "ingestion"))
    def statistics_hourly(context: dg.AssetExecutionContext, sms_api: SmsApiResource, warehouse: WarehouseResource,
                          metrics: MetricsConfig) -> dg.MaterializeResult:
        """SendStatusStatistics and CallbackStatusStatistics for every provider hour that covers the
        partition's days, one row per hour (a re-pull replaces the hour). Statistics only enrich:
        hours the provider did not answer after retries are left out and named by the check
        `statistics_complete` (a warning), and the day's other marts build all the same."""
        days = days_of(context, partitions)
        # Receipts move an hour's counts for days; once the lookback window is past they are final.
        settle = dt.timedelta(days=metrics.lookback_days + 1)
        problems: list[str] = []
        refused: list[str] = []
        for app in sms_api.sdk_app_ids:
            # Each application on its own: one the provider refuses does not cost the others.
            with warehouse.connect() as con:
                settled = settled_hours(con, days, settle, app)
            try:
                with provider_errors(), sms_api.client(app) as client:
                    fetched = fetch_statistics(client, days, skip=settled)
            except dg.Failure as failure:
                if failure.metadata.get("cause") is not None or len(sms_api.sdk_app_ids) == 1:
                    raise  # an endpoint that cannot be reached is every application's
                refused.append(f"application {app}: {failure.description}")
                continue
            with warehouse.connect() as con:
                store_statistics(con, fetched.frame)
            problems += [f"application {app}: {problem}" for problem in fetched.problems]
        if len(refused) == len(sms_api.sdk_app_ids):
            raise dg.Failure(description="; ".join(refused), allow_retries=False)
        with warehouse.connect() as con:
            report_days(context, con, "raw_statistics_hourly", days, {**days.instants(), "timezone": partitions.timezone})
        for problem in (refused + problems)[:5]:
            context.log.warning(problem)
        missing = len(problems)
        descriptions = refused + ([f"{missing} hours without the provider's statistics (first: {problems[0]}); "
                                   "the next run asks again"] if missing else [])
        return dg.MaterializeResult(check_results=[dg.AssetCheckResult(
            check_name=STATISTICS_COMPLETE, passed=not descriptions, severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(descriptions) or None,
        )])

    return [statistics_hourly]
