"""Marts users query: one row per message and per reply, and the daily metrics built on them.

Each asset rewrites the slice of its days (one transaction: delete the slice, insert it, by the SQL
file of sql/marts/) and tells the instance each day's own figures (sql/reports/mart_*.sql), so the
UI's plots over partitions show days, whatever the range of the run.
"""

# No `from __future__ import annotations`: Dagster 1.13 reads the annotations of asset and check
# functions (context, resources) when they are defined, and rejects postponed (string) ones.
import datetime as dt
from collections.abc import Callable, Sequence

import dagster as dg

from assets import options
from assets.reporting import column_schema, report_days
from assets.resources import MetricsConfig, WarehouseResource
from pipelines.days import DayRange, days_of
from pipelines.warehouse.marts import MARTS, PhoneModeError, rebuild

# The daily schedule rebuilds the marts once a day: a mart not rebuilt for a day and a bit is late
# (a warning after 25 hours, failing after 26), whatever time SMSLEDGER_DAILY_CRON picks.
DAILY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=26), warn_window=dt.timedelta(hours=25))


def mart_assets(partitions: dg.DailyPartitionsDefinition, *, reply_window_days: int = 3) -> list[dg.AssetsDefinition]:
    """The marts of `partitions`; a day's replies are attributed to messages of the
    `reply_window_days` days before it."""

    def mart(name: str, deps: Sequence, description: str,
             rebuild_params: Callable[[MetricsConfig, WarehouseResource], dict[str, object]] = lambda metrics, warehouse: {},
             ) -> dg.AssetsDefinition:
        table = f"marts.{name}"
        hourly = MARTS[table].hourly
        with_numbers = bool(MARTS[table].numbers_from)

        @dg.asset(key=["marts", name], deps=deps, description=description, freshness_policy=DAILY_FRESHNESS,
                  **options.daily(partitions, "marts"))
        def build(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                  metrics: MetricsConfig) -> dg.MaterializeResult:
            days = days_of(context, partitions)
            params = {**rebuild_params(metrics, warehouse), **({"timezone": partitions.timezone} if hourly else {})}
            if with_numbers:  # tokens instead of numbers with SMSLEDGER_PII_KEY (pipelines/warehouse/marts.py)
                params["pii_key"] = warehouse.pii_key
            with warehouse.connect() as con:
                try:
                    rebuild(con, table, days, **params)
                except PhoneModeError as exc:
                    raise dg.Failure(description=str(exc), allow_retries=False) from None
                report_days(context, con, f"mart_{name}", days, _report_params(days, hourly))
                schema = column_schema(con, table)
            return dg.MaterializeResult(metadata=schema)

        return build

    message_status = mart(
        "message_status", [["staging", "messages"], ["raw", "prices"]],
        "One row per application and SerialNo: the send (sends log), the final receipt (latest by usable receive "
        "time; a delivery is final), latency, the first conversion within the attribution window, and the cost "
        "(fee x the unit price of its region and type in force on its send day; null without a price).",
        lambda metrics, warehouse: {"attribution_days": metrics.conversion_window_days},
    )
    replies = mart(
        "replies",
        [["staging", "replies"],
         dg.AssetDep(["marts", "message_status"],
                     partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-reply_window_days, end_offset=0))],
        "One row per reply, attributed to the latest message delivered to the same number (same signature when "
        "known) within the reply window before it; opt-outs flagged.",
        lambda metrics, warehouse: {"attribution_hours": metrics.reply_window_hours,
                         "opt_out_words": [w.lower() for w in metrics.opt_out_words]},
    )
    delivery_daily = mart(
        "delivery_daily", [message_status],
        "Per send day, country, signature and template: submitted (sends-log messages), receipts, delivered, "
        "failed, pending, delivery_rate, delivered_of_receipts, receipt_coverage, latency percentiles of delivered "
        "messages, fee and cost. Groups of messages known only by their receipts (no sends log) leave submitted, pending, "
        "delivery_rate and receipt_coverage null.",
    )
    conversion_daily = mart(
        "conversion_daily", [message_status, replies],
        "Per send day, country, signature and template: delivered, conversions (within the attribution window), "
        "conversion_rate, median time to convert, replies attributed to the group's messages, reply_rate and "
        "opt-outs. A reply counts under the day of the message it answers; replies arriving after a day was built "
        "appear when the lookback window rebuilds it.",
    )
    spend_daily = mart(
        "spend_daily", [message_status],
        "Per send day, application, country, signature and template: the sends log's accepted messages, their fee "
        "(billable segments) and cost (null without a price table), and the price's currency.",
    )
    failure_reasons_daily = mart(
        "failure_reasons_daily", [message_status],
        "Failed messages per send day, country and failure description (the final receipt's).",
    )
    provider_statistics_hourly = mart(
        "provider_statistics_hourly", [["raw", "statistics_hourly"]],
        "The provider's SendStatusStatistics and CallbackStatusStatistics, one row per UTC hour that starts in the "
        "partition's days, with every counter of both actions.",
    )
    reconciliation_daily = mart(
        "reconciliation_daily", [message_status, provider_statistics_hourly],
        "Per day, our counts beside the provider's statistics for the day's hours: submitted vs RequestSuccessCount, "
        "receipts vs CallbackCount, delivered vs CallbackSuccessCount, failed vs CallbackFailCount, and the "
        "differences (ours - provider) where the two are comparable (days with a sends log); "
        "provider_delivery_rate is the app-level delivery rate that stands in when there is no sends log. One row "
        "per day and application, each against its own statistics.",
        lambda metrics, warehouse: {"first_app": warehouse.first_sdk_app_id},
    )
    return [message_status, replies, delivery_daily, conversion_daily, spend_daily, failure_reasons_daily,
            provider_statistics_hourly, reconciliation_daily]


def _report_params(days: DayRange, hourly: bool) -> dict[str, object]:
    return days.instants() if hourly else days.dates()
