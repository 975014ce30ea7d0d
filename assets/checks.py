"""Table checks on the marts, run after their asset in the same run.

Key and status checks read the whole table: a duplicate can span two days (a message first placed
by its receipt's day, later found in the sends log under its send day), and a full scan of these
tables is cheap in DuckDB. The key check of marts.message_status is blocking: the daily metrics
are not built from duplicated messages. Coverage and reconciliation are per day: they are
partitioned like their asset (a preview feature of Dagster 1.13) and record one result per day of
the run, one partition or the whole range of a single-run backfill.
"""

# No `from __future__ import annotations`: Dagster 1.13 reads the annotations of asset and check
# functions (context, resources) when they are defined, and rejects postponed (string) ones.
import datetime as dt
import warnings
from zoneinfo import ZoneInfo

import dagster as dg

from assets.options import WAREHOUSE_POOL
from assets.reporting import DayResult, evaluate_days
from assets.resources import MetricsConfig, WarehouseResource
from pipelines.days import DayRange, days_of
from pipelines.warehouse.db import sql_text

ONE_ROW_PER_SERIAL_NO = "one_row_per_serial_no"
ONE_ROW_PER_GROUP = "one_row_per_group"
ONE_ROW_PER_REPLY = "one_row_per_reply"
ALLOWED_REPORT_STATUS = "allowed_report_status"
RECEIPT_COVERAGE = "receipt_coverage"
MATCHES_PROVIDER_STATISTICS = "matches_provider_statistics"
RECEIPTS_BY_CHANNEL = "receipts_by_channel"
FEE_MATCHES_PROVIDER = "fee_matches_provider"

MESSAGE_STATUS = dg.AssetKey(["marts", "message_status"])
REPLIES = dg.AssetKey(["marts", "replies"])
DELIVERY_DAILY = dg.AssetKey(["marts", "delivery_daily"])
RECONCILIATION_DAILY = dg.AssetKey(["marts", "reconciliation_daily"])
STATISTICS_HOURLY = dg.AssetKey(["raw", "statistics_hourly"])

# Tables and the columns that must identify a row (identifiers only: no values are formatted in).
_KEYS = {
    ONE_ROW_PER_SERIAL_NO: ("marts.message_status", ("sms_sdk_app_id", "serial_no")),
    ONE_ROW_PER_GROUP: ("marts.delivery_daily", ("sms_sdk_app_id", "day", "iso_code", "sign_name", "template_id")),
    ONE_ROW_PER_REPLY: ("marts.replies", ("sms_sdk_app_id", "record_key")),
}

# Counts compared with the provider's: (ours, the provider's) columns of marts.reconciliation_daily.
_RECONCILED = {
    "submitted": "provider_request_success_count",
    "receipts": "provider_callback_count",
    "delivered": "provider_callback_success_count",
    "failed": "provider_callback_fail_count",
}


def build_checks(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The marts' checks; the per-day ones follow `partitions`, the marts' daily partitions."""

    def unique_check(name: str, asset: dg.AssetKey, description: str, *, blocking: bool = False) -> dg.AssetChecksDefinition:
        table, columns = _KEYS[name]
        totals_sql, repeated_sql = _key_sql(table, columns)

        @dg.asset_check(name=name, asset=asset, description=description, pool=WAREHOUSE_POOL, blocking=blocking)
        def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
            with warehouse.connect() as con:
                rows, distinct = con.execute(totals_sql).fetchone()
                repeated = con.execute(repeated_sql).fetchall()
            surplus = rows - distinct
            return _result(surplus == 0, f"{surplus} surplus rows repeat a key ({', '.join(columns)})", {
                "rows": dg.IntMetadataValue(rows),
                "surplus_rows": dg.IntMetadataValue(surplus),
                "duplicated_keys": dg.MetadataValue.json([
                    {**{c: _jsonable(v) for c, v in zip(columns, row[:-1], strict=True)}, "rows": row[-1]}
                    for row in repeated
                ]),
            })

        return check

    @dg.asset_check(name=ALLOWED_REPORT_STATUS, asset=MESSAGE_STATUS, pool=WAREHOUSE_POOL,
                    description="report_status is SUCCESS, FAIL, or null while pending.")
    def allowed_report_status(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            unexpected = con.execute(sql_text("reports/check_report_status")).fetchall()
        count = sum(n for _, n in unexpected)
        return _result(count == 0, f"{count} messages have another report_status", {
            "unexpected_rows": dg.IntMetadataValue(count),
            "unexpected_statuses": dg.MetadataValue.json({status: n for status, n in unexpected}),
        })

    # Partitioned asset checks are a preview feature in Dagster 1.13; chosen deliberately so that
    # each day keeps its own result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.asset_check(name=RECEIPT_COVERAGE, asset=DELIVERY_DAILY, partitions_def=partitions, pool=WAREHOUSE_POOL,
                        description="Each day older than the lookback window has receipts for at least "
                                    "coverage_threshold of its submitted messages (days without a sends log pass, "
                                    "saying they have nothing to compare).")
        def receipt_coverage(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                             metrics: MetricsConfig):
            days = days_of(context, partitions)
            settled_before = _settled_before(partitions, metrics)
            rows = _rows_by_day(warehouse, "check_receipt_coverage", days)

            def evaluate(day: dt.date) -> DayResult:
                row = rows.get(day, {})
                submitted, receipted = int(row.get("submitted") or 0), int(row.get("receipted") or 0)
                if not submitted:
                    return DayResult(True, "no sends-log messages: nothing to compare")
                coverage = receipted / submitted
                metadata = {"coverage": dg.FloatMetadataValue(coverage), "receipts": dg.IntMetadataValue(receipted),
                            "submitted": dg.IntMetadataValue(submitted),
                            "threshold": dg.FloatMetadataValue(metrics.coverage_threshold)}
                if day >= settled_before:
                    return DayResult(True, f"coverage {coverage:.1%}; receipts still arrive for this day "
                                           f"(lookback {metrics.lookback_days} days)", metadata=metadata)
                passed = coverage >= metrics.coverage_threshold
                return DayResult(passed, None if passed else f"receipt coverage {coverage:.1%} is below "
                                 f"{metrics.coverage_threshold:.0%}: {submitted - receipted} of {submitted} messages "
                                 "have no receipt", dg.AssetCheckSeverity.WARN, metadata)

            yield from evaluate_days(context, DELIVERY_DAILY, RECEIPT_COVERAGE, days.days(), evaluate)

        @dg.asset_check(name=MATCHES_PROVIDER_STATISTICS, asset=RECONCILIATION_DAILY, partitions_def=partitions,
                        pool=WAREHOUSE_POOL,
                        description="Per day, our submitted, receipts, delivered and failed counts are within "
                                    "reconciliation_tolerance (a fraction of the provider's number; 0 = exact) of "
                                    "the provider's statistics. Only comparable counts are compared: without a "
                                    "sends log our messages are placed by their receipt's day and the provider's by "
                                    "send hour, so such days say so and pass; days without provider statistics too.")
        def matches_provider_statistics(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                        metrics: MetricsConfig):
            days = days_of(context, partitions)
            settled_before = _settled_before(partitions, metrics)
            rows = _rows_by_day_and_app(warehouse, "check_reconciliation", days)

            def evaluate(day: dt.date) -> DayResult:
                # Each application against its own statistics; a day's result names those that differ.
                compared, skipped, texts = {}, [], []
                apps = rows.get(day, {})
                for app, row in apps.items():
                    named = f"application {app}: " if len(apps) > 1 else ""
                    if not row["provider_hours"]:
                        skipped.append(f"{named}nothing to compare: no provider statistics for this day")
                        continue
                    if not row["has_sends_log"]:
                        skipped.append(f"{named}not comparable: without a sends log our messages are placed by the "
                                       "day of their first receipt, the provider counts them by send hour")
                        continue
                    compared[app] = {name: {"ours": row[name], "provider": row[provider]}
                                     for name, provider in _RECONCILED.items()}
                    differences = {
                        name: (row[name], row[provider]) for name, provider in _RECONCILED.items()
                        if row[provider] is not None and row[name] is not None
                        and abs(row[name] - row[provider]) > metrics.reconciliation_tolerance * row[provider]
                    }
                    if differences:
                        texts.append(named + "; ".join(
                            f"{name} ours {ours:,} vs provider {provider:,} ({ours - provider:+,})"
                            for name, (ours, provider) in differences.items()))
                if not compared:
                    return DayResult(True, "; ".join(skipped) or "nothing to compare: no provider statistics for this day")
                if len(apps) == 1:
                    metadata = {name: dg.MetadataValue.json(value) for name, value in next(iter(compared.values())).items()}
                else:
                    metadata = {"compared": dg.MetadataValue.json(compared), "not_compared": "; ".join(skipped) or "none"}
                if not texts:
                    return DayResult(True, metadata=metadata)
                # Receipts keep arriving for days (and the queues are drained on their own schedule),
                # so inside the lookback window a difference may only be in flight: it warns there,
                # and is an error once the day is settled.
                severity = dg.AssetCheckSeverity.ERROR if day < settled_before else dg.AssetCheckSeverity.WARN
                return DayResult(False, f"differs from the provider's statistics: {' | '.join(texts)}", severity,
                                 metadata)

            yield from evaluate_days(context, RECONCILIATION_DAILY, MATCHES_PROVIDER_STATISTICS, days.days(), evaluate)

        @dg.asset_check(name=FEE_MATCHES_PROVIDER, asset=STATISTICS_HOURLY, partitions_def=partitions,
                        pool=WAREHOUSE_POOL,
                        description="Per day and application, the fee (billable segments) of the sends log's accepted "
                                    "messages is within reconciliation_tolerance of the provider's "
                                    "SendStatusStatistics.FeeCount. An application without sends-log messages that "
                                    "day, or whose statistics miss hours of it, has nothing to compare and passes.")
        def fee_matches_provider(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                 metrics: MetricsConfig):
            days = days_of(context, partitions)
            settled_before = _settled_before(partitions, metrics)
            with warehouse.connect() as con:
                rows = con.execute(sql_text("reports/check_fee_reconciliation"), {
                    **days.instants(), **days.seconds(), "timezone": partitions.timezone,
                    "first_app": warehouse.first_sdk_app_id}).fetchall()

            def evaluate(day: dt.date) -> DayResult:
                whole_day = DayRange(day, day, ZoneInfo(partitions.timezone))
                hours_per_day = round((whole_day.end - whole_day.start).total_seconds() / 3600)
                compared, differences, skipped = {}, [], []
                for _, app, messages, fee, fee_count, hours in (row for row in rows if row[0] == day):
                    if not messages or hours < hours_per_day:
                        skipped.append(f"{app}: " + ("no sends-log messages" if not messages else
                                                     f"statistics for {hours} of {hours_per_day} hours"))
                        continue
                    compared[app] = {"ours": int(fee or 0), "provider": int(fee_count or 0)}
                    if abs(compared[app]["ours"] - compared[app]["provider"]) > metrics.reconciliation_tolerance * (fee_count or 0):
                        ours, provider = compared[app]["ours"], compared[app]["provider"]
                        differences.append(f"application {app}: fee ours {ours:,} vs FeeCount {provider:,} "
                                           f"({ours - provider:+,})")
                metadata = {"fee": dg.MetadataValue.json(compared), "not_compared": "; ".join(skipped) or "none"}
                if not differences:
                    return DayResult(True, None if compared else f"nothing to compare ({'; '.join(skipped) or 'no data'})",
                                     metadata=metadata)
                # Statistics hours still move while late sends are counted: a warning inside the
                # lookback window, an error once the day is settled.
                severity = dg.AssetCheckSeverity.ERROR if day < settled_before else dg.AssetCheckSeverity.WARN
                return DayResult(False, "; ".join(differences), severity, metadata)

            yield from evaluate_days(context, STATISTICS_HOURLY, FEE_MATCHES_PROVIDER, days.days(), evaluate)

        @dg.asset_check(name=RECEIPTS_BY_CHANNEL, asset=MESSAGE_STATUS, partitions_def=partitions, pool=WAREHOUSE_POOL,
                        description="Per day, the receipts that came by push callback, by pull, and by both. The drain "
                                    "keeps running beside `smsledger receive` as reconciliation: on a day with pushes, a "
                                    "receipt that came by pull only is one the receiver never got (a warning).")
        def receipts_by_channel(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
            days = days_of(context, partitions)
            rows = _rows_by_day(warehouse, "check_receipt_channels", days)

            def evaluate(day: dt.date) -> DayResult:
                row = rows.get(day, {})
                receipts, callback_only, both, pull_only = (
                    row.get(name, 0) for name in ("receipts", "callback_only", "both_channels", "pull_only"))
                metadata = {"receipts": dg.IntMetadataValue(receipts), "callback_only": dg.IntMetadataValue(callback_only),
                            "both": dg.IntMetadataValue(both), "pull_only": dg.IntMetadataValue(pull_only)}
                if not callback_only + both:
                    return DayResult(True, "no receipt came by push callback", metadata=metadata)
                if pull_only:
                    return DayResult(False, f"{pull_only:,} of {receipts:,} receipts came only by pull: pushes the "
                                            "receiver did not get (the drain caught them)",
                                     dg.AssetCheckSeverity.WARN, metadata)
                return DayResult(True, f"{callback_only + both:,} receipts came by push, {both:,} of them by pull too",
                                 metadata=metadata)

            yield from evaluate_days(context, MESSAGE_STATUS, RECEIPTS_BY_CHANNEL, days.days(), evaluate)

    return [
        unique_check(ONE_ROW_PER_SERIAL_NO, MESSAGE_STATUS, "One row per (sms_sdk_app_id, serial_no) in marts.message_status "
                     "(blocking: the daily metrics are not built from duplicated messages).", blocking=True),
        unique_check(ONE_ROW_PER_GROUP, DELIVERY_DAILY,
                     "One row per (sms_sdk_app_id, day, iso_code, sign_name, template_id) in marts.delivery_daily, "
                     "nulls equal."),
        unique_check(ONE_ROW_PER_REPLY, REPLIES, "One row per reply (sms_sdk_app_id, record_key) in marts.replies."),
        allowed_report_status,
        receipt_coverage,
        matches_provider_statistics,
        receipts_by_channel,
        fee_matches_provider,
    ]


def _rows_by_day(warehouse: WarehouseResource, report: str, days: DayRange) -> dict[dt.date, dict]:
    """The rows of sql/reports/`report`.sql for the days, by their first column (the day)."""
    return {day: row for (day, _), row in _rows(warehouse, report, days).items()}


def _rows_by_day_and_app(warehouse: WarehouseResource, report: str, days: DayRange) -> dict[dt.date, dict[str, dict]]:
    """The rows of sql/reports/`report`.sql for the days, by day (first column), then application (second)."""
    by_day: dict[dt.date, dict[str, dict]] = {}
    for (day, app), row in _rows(warehouse, report, days).items():
        by_day.setdefault(day, {})[app] = row
    return by_day


def _rows(warehouse: WarehouseResource, report: str, days: DayRange) -> dict[tuple, dict]:
    with warehouse.connect() as con:
        cursor = con.execute(sql_text(f"reports/{report}"), days.dates())
        names = [d[0] for d in cursor.description]
        return {row[:2]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def _result(passed: bool, failure: str, metadata: dict) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.ERROR,
                               description=None if passed else failure, metadata=metadata)


def _today(timezone: str) -> dt.date:
    return dt.datetime.now(ZoneInfo(timezone)).date()


def _settled_before(partitions: dg.DailyPartitionsDefinition, metrics: MetricsConfig) -> dt.date:
    """The first day still inside the lookback window: receipts (and fees) still move before it."""
    return _today(partitions.timezone) - dt.timedelta(days=metrics.lookback_days)


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


def _key_sql(table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    """(rows and distinct keys, the most repeated keys); group by and distinct treat nulls as equal."""
    cols = ", ".join(columns)
    totals = f"select count(*), (select count(*) from (select distinct {cols} from {table})) from {table}"
    repeated = (f"select {cols}, count(*) as n from {table} group by {cols} having count(*) > 1 "
                f"order by n desc, {cols} limit 20")
    return totals, repeated
