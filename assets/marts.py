"""Marts users query: one row per message and per reply, and the daily metrics built on them."""

# No `from __future__ import annotations`: Dagster 1.13 reads the annotations of asset and check
# functions (context, resources) when they are defined, and rejects postponed (string) ones.
import dagster as dg

from assets import options
from pipelines.days import days_of
from assets.resources import MetricsConfig, WarehouseResource
from pipelines.warehouse.db import sql_text
from pipelines.warehouse.marts import rebuild


def mart_assets(partitions: dg.DailyPartitionsDefinition, *, reply_window_days: int = 3):
    """The marts of `partitions`; a day's replies are attributed to messages of the
    `reply_window_days` days before it."""
    common = options.daily(partitions, "marts")

    @dg.asset(key=["marts", "message_status"], deps=[["staging", "messages"]], **common)
    def message_status(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       metrics: MetricsConfig) -> dg.MaterializeResult:
        """One row per SerialNo: the send (sends log), the final receipt (latest by receive time),
        latency, and the first conversion within the attribution window."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.message_status", days, attribution_days=metrics.conversion_window_days)
            submitted, delivered_logged, delivered, failed, pending, converted = con.execute(
                sql_text("reports/mart_message_status"), days.dates()).fetchone()
        return dg.MaterializeResult(metadata={
            "rows": rows, "submitted": submitted, "delivered": delivered, "failed": failed, "pending": pending,
            "converted": converted,
            "delivery_rate": dg.FloatMetadataValue(delivered_logged / submitted if submitted else None),
        })

    @dg.asset(
        key=["marts", "replies"],
        deps=[
            ["staging", "replies"],
            dg.AssetDep(["marts", "message_status"],
                        partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-reply_window_days, end_offset=0)),
        ],
        **common,
    )
    def replies(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                metrics: MetricsConfig) -> dg.MaterializeResult:
        """One row per reply, attributed to the latest message delivered to the same number (same
        signature when known) in the 72 hours before it; opt-outs flagged."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.replies", days, attribution_hours=metrics.reply_window_hours,
                           opt_out_words=[w.lower() for w in metrics.opt_out_words])
            attributed, opt_outs = con.execute(sql_text("reports/mart_replies"), days.dates()).fetchone()
        return dg.MaterializeResult(metadata={"rows": rows, "attributed": attributed, "opt_outs": opt_outs})

    @dg.asset(key=["marts", "delivery_daily"], deps=[message_status], **common)
    def delivery_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       metrics: MetricsConfig) -> dg.MaterializeResult:
        """Per send day, country, signature and template: submitted (sends-log messages), receipts,
        delivered, failed, pending, delivery_rate, delivered_of_receipts, receipt_coverage, latency
        percentiles of delivered messages and fee. Groups of messages known only by their receipts
        (no sends log) leave submitted, pending, delivery_rate and receipt_coverage null."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.delivery_daily", days)
            submitted, receipts, delivered, failed, pending, delivered_logged, fee, p50, p95 = con.execute(
                sql_text("reports/mart_delivery_daily"), days.dates()).fetchone()
        logged_receipts = submitted - pending if submitted is not None else None
        return dg.MaterializeResult(metadata={
            "rows": rows,
            "submitted": _count(submitted),
            "receipts": _count(receipts or 0),
            "delivered": _count(delivered or 0),
            "failed": _count(failed or 0),
            "pending": _count(pending),
            "delivery_rate": _rate(delivered_logged, submitted),
            "delivered_of_receipts": _rate(delivered, (delivered or 0) + (failed or 0)),
            "receipt_coverage": _rate(logged_receipts, submitted),
            "latency_p50_s": dg.FloatMetadataValue(p50),
            "latency_p95_s": dg.FloatMetadataValue(p95),
            "fee": _count(fee),
        })

    @dg.asset(key=["marts", "conversion_daily"], deps=[message_status, replies], **common)
    def conversion_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                         metrics: MetricsConfig) -> dg.MaterializeResult:
        """Per send day, country, signature and template: delivered, conversions (within the
        attribution window), conversion_rate, median time to convert, replies attributed to the
        group's messages, reply_rate and opt-outs. A reply counts under the day of the message it
        answers; replies arriving after a day was built appear when the lookback window rebuilds it."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.conversion_daily", days)
            delivered, conversions, replies_, opt_outs = con.execute(
                sql_text("reports/mart_conversion_daily"), days.dates()).fetchone()
        return dg.MaterializeResult(metadata={
            "rows": rows,
            "delivered": _count(delivered or 0),
            "conversions": _count(conversions or 0),
            "conversion_rate": _rate(conversions, delivered),
            "replies": _count(replies_ or 0),
            "reply_rate": _rate(replies_, delivered),
            "opt_outs": _count(opt_outs or 0),
        })

    @dg.asset(key=["marts", "failure_reasons_daily"], deps=[message_status], **common)
    def failure_reasons_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                              metrics: MetricsConfig) -> dg.MaterializeResult:
        """Failed messages per send day, country and failure description (the final receipt's)."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.failure_reasons_daily", days)
            failed, reasons, top = con.execute(sql_text("reports/mart_failure_reasons_daily"), days.dates()).fetchone()
        return dg.MaterializeResult(metadata={
            "rows": rows, "failed": _count(failed or 0), "reasons": reasons, "top_reason": top or "none",
        })

    @dg.asset(key=["marts", "provider_statistics_hourly"], deps=[["raw", "statistics_hourly"]], **common)
    def provider_statistics_hourly(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                                   metrics: MetricsConfig) -> dg.MaterializeResult:
        """The provider's SendStatusStatistics and CallbackStatusStatistics, one row per UTC hour
        that starts in the partition's days, with every counter of both actions."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            hours = rebuild(con, "marts.provider_statistics_hourly", days, timezone=partitions.timezone)
            requested, callbacks, succeeded, failed = con.execute(
                sql_text("reports/mart_provider_statistics_hourly"), days.instants()).fetchone()
        return dg.MaterializeResult(metadata={
            "hours": hours,
            "provider_request_success_count": _count(requested),
            "provider_callback_count": _count(callbacks),
            "provider_callback_success_count": _count(succeeded),
            "provider_callback_fail_count": _count(failed),
            "provider_delivery_rate": _rate(succeeded, requested),
        })

    @dg.asset(key=["marts", "reconciliation_daily"], deps=[message_status, provider_statistics_hourly], **common)
    def reconciliation_daily(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                             metrics: MetricsConfig) -> dg.MaterializeResult:
        """Per day, our counts beside the provider's statistics for the day's hours: submitted vs
        RequestSuccessCount, receipts vs CallbackCount, delivered vs CallbackSuccessCount, failed vs
        CallbackFailCount, the differences (ours - provider), and provider_delivery_rate, the
        app-level delivery rate that stands in when there is no sends log."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.reconciliation_daily", days)
            totals = con.execute(sql_text("reports/mart_reconciliation_daily"), days.dates()).fetchone()
        submitted_diff, receipts_diff, delivered_diff, failed_diff, requested, succeeded, unmatched, unlogged = totals
        return dg.MaterializeResult(metadata={
            "days": rows,
            "submitted_diff": _count(submitted_diff),
            "receipts_diff": _count(receipts_diff),
            "delivered_diff": _count(delivered_diff),
            "failed_diff": _count(failed_diff),
            "provider_delivery_rate": _rate(succeeded, requested),
            "days_without_provider_statistics": unmatched,
            "days_without_sends_log": unlogged,
        })

    return [message_status, replies, delivery_daily, conversion_daily, failure_reasons_daily,
            provider_statistics_hourly, reconciliation_daily]


def _count(value: int | None) -> dg.IntMetadataValue:
    """A count as metadata (DuckDB sums are HUGEINT); None where the count is unknown, such as
    submitted without a sends log."""
    return dg.IntMetadataValue(int(value) if value is not None else None)


def _rate(numerator: int | None, denominator: int | None) -> dg.FloatMetadataValue:
    """numerator / denominator, or null when either is unknown or the denominator is 0."""
    if numerator is None or not denominator:
        return dg.FloatMetadataValue(None)
    return dg.FloatMetadataValue(float(numerator) / float(denominator))
