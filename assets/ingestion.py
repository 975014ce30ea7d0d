"""Ingestion: the provider's queues into the spool and raw tables, the sending application's
files, signatures and templates, hourly provider statistics, and gap filling by phone number."""

# No `from __future__ import annotations`: Dagster reads the annotations of asset functions
# (config, resources, context) when it builds the definitions.
import contextlib
import dataclasses

import dagster as dg

from assets import options
from assets.options import TRANSIENT_RETRY, WAREHOUSE_POOL
from pipelines.ingest.dimensions import fetch_dimensions, store_dimensions
from pipelines.ingest.drain import drain_queue
from pipelines.ingest.gapfill import fetch_gaps, plan_gap_fill
from pipelines.days import days_of
from assets.resources import MetricsConfig, SmsApiResource, SourcesResource, WarehouseResource
from pipelines.ingest.statistics import fetch_statistics, store_statistics
from pipelines.tencent import actions as A
from pipelines.tencent.errors import TencentCloudError
from pipelines.warehouse.db import sql_text
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.sending_app import load_source_files


@contextlib.contextmanager
def provider_errors():
    """A provider error that a retry cannot fix (credentials, permissions, parameters) fails the
    step at once with its one line; transient ones are left to the retry policy."""
    try:
        yield
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
    retry_policy=TRANSIENT_RETRY,
)
def queue_pages(context: dg.AssetExecutionContext, config: DrainConfig, sms_api: SmsApiResource,
                warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Raw responses of PullSmsSendStatus and PullSmsReplyStatus, written to the spool (fsynced)
    before parsing, until both queues are empty or the time budget is spent. Needs no database:
    it keeps working while another process holds the warehouse."""
    spool = warehouse.spool()
    metadata: dict[str, dg.RawMetadataValue] = {}
    failures: list[str] = []
    with sms_api.client() as client:
        for action, name in ((A.PULL_SEND_STATUS, "receipts"), (A.PULL_REPLY_STATUS, "replies")):
            # Each queue on its own: replies not enabled for the application must not stop receipts.
            try:
                report = drain_queue(client, spool, action, time_budget_seconds=config.time_budget_seconds,
                                     workers=sms_api.workers)
            except TencentCloudError as exc:
                context.log.error(str(exc))
                failures.append(str(exc))
                metadata[f"{name}_error"] = exc.code
                continue
            context.log.info(f"{action}: {report.records} records in {report.pulls} pulls "
                             f"({report.pulls_per_second:.0f}/s), stopped by {report.stopped_by}")
            metadata.update({
                f"{name}_pulled": report.records,
                f"{name}_pulls": report.pulls,
                f"{name}_indeterminate_pulls": report.indeterminate,
                f"{name}_throttled": report.throttled,
                f"{name}_drained": report.drained,
            })
    if failures:
        # What was spooled stays in the spool: the next load (or the daily run's gap filling) takes it.
        raise dg.Failure(description="; ".join(failures), metadata=metadata, allow_retries=False)
    return dg.MaterializeResult(metadata=metadata)


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
    spool = warehouse.spool()
    with warehouse.connect() as con:
        report = load_spool(con, spool)
        totals = con.execute(sql_text("reports/raw_totals")).fetchone()
    return dg.MaterializeResult(metadata={
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


@dg.asset(key=["raw", "signs_and_templates"], group_name="ingestion", kinds={"duckdb"}, pool=WAREHOUSE_POOL,
          retry_policy=TRANSIENT_RETRY)
def signs_and_templates(context: dg.AssetExecutionContext, sms_api: SmsApiResource,
                        warehouse: WarehouseResource) -> dg.MaterializeResult:
    """raw.signs and raw.templates from DescribeSmsSignList / DescribeSmsTemplateList. Optional:
    personal accounts and sub-account keys may not list them, which only costs the names."""
    try:
        with sms_api.client() as client:
            signs, templates = fetch_dimensions(client)
    except TencentCloudError as exc:
        if exc.retryable:
            raise
        context.log.warning(f"signatures and templates not listed: {exc}")
        return dg.MaterializeResult(metadata={"signs": 0, "templates": 0, "error": str(exc)})
    with warehouse.connect() as con:
        report = store_dimensions(con, signs, templates)
    return dg.MaterializeResult(metadata={"signs": report.signs, "templates": report.templates})


def daily_assets(partitions: dg.DailyPartitionsDefinition):
    """The daily-partitioned ingestion assets (built per partitions definition)."""

    @dg.asset(key=["raw", "statistics_hourly"], retry_policy=TRANSIENT_RETRY, **options.daily(partitions, "ingestion"))
    def statistics_hourly(context: dg.AssetExecutionContext, sms_api: SmsApiResource, warehouse: WarehouseResource,
                          metrics: MetricsConfig) -> dg.MaterializeResult:
        """SendStatusStatistics and CallbackStatusStatistics for every provider hour that covers the
        partition's days, one row per hour (a re-pull replaces the hour)."""
        days = days_of(context, partitions)
        with provider_errors(), sms_api.client() as client:
            frame = fetch_statistics(client, days)
        with warehouse.connect() as con:
            report = store_statistics(con, frame)
        return dg.MaterializeResult(metadata={
            "hours": report.hours, "provider_request_success_count": report.request_success_count,
            "provider_callback_count": report.callback_count,
        })

    @dg.asset(key=["raw", "gap_fill"], deps=[raw_queue_records, ["raw", "sends"]], retry_policy=TRANSIENT_RETRY,
              **options.daily(partitions, "ingestion"))
    def gap_fill(context: dg.AssetExecutionContext, sms_api: SmsApiResource, warehouse: WarehouseResource,
                 metrics: MetricsConfig) -> dg.MaterializeResult:
        """Receipts and replies of the partition's sends-log messages that have no receipt yet,
        fetched by phone number (only those numbers) within the provider's 7-day retention, then
        loaded like queue responses. Older messages are counted as beyond retention."""
        days = days_of(context, partitions)
        spool = warehouse.spool()
        with warehouse.connect() as con:
            plan = plan_gap_fill(con, days, reply_window_hours=metrics.reply_window_hours)
        with provider_errors(), sms_api.client() as client:
            report = fetch_gaps(client, spool, plan, workers=sms_api.workers)
        with warehouse.connect() as con:
            loaded = load_spool(con, spool)
        if report.beyond_retention:
            context.log.warning(f"{report.beyond_retention} messages lack receipts but are older than the "
                                "provider's 7-day by-number retention; they stay pending")
        return dg.MaterializeResult(metadata={
            **{k: v for k, v in dataclasses.asdict(report).items()},
            "new_records": loaded.new_records,
            "quarantined_rows": loaded.quarantined,
        })

    return [statistics_hourly, gap_fill]
