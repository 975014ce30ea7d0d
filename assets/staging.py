"""Staging: raw records normalized in polars (E.164 numbers, UTC times), deduplicated, and
written per daily partition in one transaction (delete the slice, insert it)."""

# No `from __future__ import annotations`: Dagster reads the annotations of asset functions
# (config, resources, context) when it builds the definitions.
import dagster as dg

from assets import options
from assets.reporting import report_days
from assets.ingestion import raw_queue_records
from pipelines.days import days_of
from assets.resources import MetricsConfig, WarehouseResource
from pipelines.warehouse.staging import build_messages, build_replies


def staging_assets(partitions: dg.DailyPartitionsDefinition):
    @dg.asset(key=["staging", "messages"], deps=[raw_queue_records, ["raw", "sends"], ["raw", "conversions"]],
              **options.daily(partitions, "staging", "polars"))
    def staging_messages(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                         metrics: MetricsConfig) -> dg.MaterializeResult:
        """staging.sends, staging.receipts and staging.conversions of the messages of the day: sent
        that day per the sends log, or, missing from the log, first receipted that day."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            report = build_messages(con, days, warehouse.first_sdk_app_id)
            report_days(context, con, "staging_messages", days, days.dates())
        if report.unusable_send_times:
            context.log.warning(f"{report.unusable_send_times} sends-log rows near these days have no usable "
                                "SendTime (0, negative or far future): they belong to no day")
        return dg.MaterializeResult()

    @dg.asset(key=["staging", "replies"], deps=[raw_queue_records],
              **options.daily(partitions, "staging", "polars"))
    def staging_replies(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                        metrics: MetricsConfig) -> dg.MaterializeResult:
        """staging.replies: distinct replies of the day, normalized."""
        days = days_of(context, partitions)
        with warehouse.connect() as con:
            build_replies(con, days)
            report_days(context, con, "staging_replies", days, days.dates())
        return dg.MaterializeResult()

    return [staging_messages, staging_replies]
