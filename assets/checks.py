"""Table checks on the marts, run after their asset in the same run.

Key and status checks read the whole table: a duplicate can span two days (a message first placed
by its receipt's day, later found in the sends log under its send day), and a full scan of these
tables is cheap in DuckDB. Coverage and reconciliation are per day: they are partitioned like
their asset (a preview feature of Dagster 1.13) and evaluate the days of the run, one partition or
the whole range of a single-run backfill, so each partition carries its own result.
"""

# No `from __future__ import annotations`: Dagster 1.13 reads the annotations of asset and check
# functions (context, resources) when they are defined, and rejects postponed (string) ones.
import datetime as dt
import warnings
from zoneinfo import ZoneInfo

import dagster as dg

from assets.options import WAREHOUSE_POOL
from pipelines.days import days_of
from pipelines.warehouse.db import sql_text
from assets.resources import MetricsConfig, WarehouseResource

ONE_ROW_PER_SERIAL_NO = "one_row_per_serial_no"
ONE_ROW_PER_GROUP = "one_row_per_group"
ONE_ROW_PER_REPLY = "one_row_per_reply"
ALLOWED_REPORT_STATUS = "allowed_report_status"
RECEIPT_COVERAGE = "receipt_coverage"
MATCHES_PROVIDER_STATISTICS = "matches_provider_statistics"

MESSAGE_STATUS = dg.AssetKey(["marts", "message_status"])
REPLIES = dg.AssetKey(["marts", "replies"])
DELIVERY_DAILY = dg.AssetKey(["marts", "delivery_daily"])
RECONCILIATION_DAILY = dg.AssetKey(["marts", "reconciliation_daily"])

# Tables and the columns that must identify a row (identifiers only: no values are formatted in).
_KEYS = {
    ONE_ROW_PER_SERIAL_NO: ("marts.message_status", ("serial_no",)),
    ONE_ROW_PER_GROUP: ("marts.delivery_daily", ("day", "iso_code", "sign_name", "template_id")),
    ONE_ROW_PER_REPLY: ("marts.replies", ("record_key",)),
}


_RECONCILED = ("submitted", "receipts", "delivered", "failed")


def build_checks(partitions: dg.DailyPartitionsDefinition) -> list[dg.AssetChecksDefinition]:
    """The marts' checks; the per-day ones follow `partitions`, the marts' daily partitions."""

    def unique_check(name: str, asset: dg.AssetKey, description: str) -> dg.AssetChecksDefinition:
        table, columns = _KEYS[name]
        totals_sql, repeated_sql = _key_sql(table, columns)

        @dg.asset_check(name=name, asset=asset, description=description, pool=WAREHOUSE_POOL)
        def check(warehouse: WarehouseResource) -> dg.AssetCheckResult:
            with warehouse.connect() as con:
                rows, distinct = con.execute(totals_sql).fetchone()
                repeated = con.execute(repeated_sql).fetchall()
            surplus = rows - distinct
            return dg.AssetCheckResult(
                passed=surplus == 0,
                severity=dg.AssetCheckSeverity.ERROR,
                description=None if surplus == 0 else f"{surplus} surplus rows repeat a key ({', '.join(columns)})",
                metadata={
                    "rows": dg.IntMetadataValue(rows),
                    "surplus_rows": dg.IntMetadataValue(surplus),
                    "duplicated_keys": dg.MetadataValue.json([
                        {**{c: _jsonable(v) for c, v in zip(columns, row[:-1], strict=True)}, "rows": row[-1]}
                        for row in repeated
                    ]),
                },
            )

        return check

    @dg.asset_check(name=ALLOWED_REPORT_STATUS, asset=MESSAGE_STATUS, pool=WAREHOUSE_POOL,
                    description="report_status is SUCCESS, FAIL, or null while pending.")
    def allowed_report_status(warehouse: WarehouseResource) -> dg.AssetCheckResult:
        with warehouse.connect() as con:
            unexpected = con.execute(sql_text("reports/check_report_status")).fetchall()
        count = sum(n for _, n in unexpected)
        return dg.AssetCheckResult(
            passed=count == 0,
            severity=dg.AssetCheckSeverity.ERROR,
            description=None if count == 0 else f"{count} messages have another report_status",
            metadata={
                "unexpected_rows": dg.IntMetadataValue(count),
                "unexpected_statuses": dg.MetadataValue.json({status: n for status, n in unexpected}),
            },
        )

    # Partitioned asset checks are a preview feature in Dagster 1.13; chosen deliberately so that
    # each day keeps its own result.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)

        @dg.asset_check(name=RECEIPT_COVERAGE, asset=DELIVERY_DAILY, partitions_def=partitions, pool=WAREHOUSE_POOL,
                        description="Each day older than the lookback window has receipts for at least "
                                    "coverage_threshold of its submitted messages (days without a sends log are skipped).")
        def receipt_coverage(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                             metrics: MetricsConfig) -> dg.AssetCheckResult:
            days = days_of(context, partitions)
            settled_before = _today(partitions.timezone) - dt.timedelta(days=metrics.lookback_days)
            with warehouse.connect() as con:
                rows = con.execute(sql_text("reports/check_receipt_coverage"), days.dates()).fetchall()
            settled = [(day, int(submitted), int(receipted)) for day, submitted, receipted in rows
                       if day < settled_before and submitted]
            below = [
                {"day": day.isoformat(), "coverage": receipted / submitted, "receipts": receipted, "submitted": submitted}
                for day, submitted, receipted in settled
                if receipted / submitted < metrics.coverage_threshold
            ]
            lowest = min((receipted / submitted for _, submitted, receipted in settled), default=None)
            if below:
                description = "receipt coverage below {:.0%} on {}".format(
                    metrics.coverage_threshold, ", ".join(f"{b['day']} ({b['coverage']:.1%})" for b in below))
            elif not settled:
                description = "no day of the run is older than the lookback window and has a sends log"
            else:
                description = None
            return dg.AssetCheckResult(
                passed=not below,
                severity=dg.AssetCheckSeverity.WARN,
                description=description,
                metadata={
                    "days_checked": dg.IntMetadataValue(len(settled)),
                    "days_below": dg.IntMetadataValue(len(below)),
                    "lowest_coverage": dg.FloatMetadataValue(lowest),
                    "threshold": dg.FloatMetadataValue(metrics.coverage_threshold),
                    "below_threshold": dg.MetadataValue.json(below),
                },
            )

        @dg.asset_check(name=MATCHES_PROVIDER_STATISTICS, asset=RECONCILIATION_DAILY, partitions_def=partitions,
                        pool=WAREHOUSE_POOL,
                        description="Per day, our submitted, receipts, delivered and failed counts are within "
                                    "reconciliation_tolerance (a fraction of the provider's number; 0 = exact) of "
                                    "the provider's statistics. Days without provider statistics are skipped, and "
                                    "submitted on days without a sends log.")
        def matches_provider_statistics(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource,
                                        metrics: MetricsConfig) -> dg.AssetCheckResult:
            days = days_of(context, partitions)
            with warehouse.connect() as con:
                rows = con.execute(sql_text("reports/check_reconciliation"), days.dates()).fetchall()
            differences, skipped, checked = [], [], 0
            for day, has_sends_log, provider_hours, *pairs in rows:
                if not provider_hours:
                    skipped.append(f"{day}: no provider statistics")
                    continue
                checked += 1
                for name, ours, provider in zip(_RECONCILED, pairs[0::2], pairs[1::2], strict=True):
                    if provider is None or (name == "submitted" and not has_sends_log):
                        continue
                    if abs(ours - provider) > metrics.reconciliation_tolerance * provider:
                        differences.append({"day": day.isoformat(), "count": name, "ours": ours,
                                            "provider": provider, "diff": ours - provider})
            # Receipts keep arriving for days (and the queues are drained on their own schedule),
            # so inside the lookback window a difference may only be in flight: it warns there, and
            # is an error once the day is settled.
            settled_before = _today(partitions.timezone) - dt.timedelta(days=metrics.lookback_days)
            settled = any(dt.date.fromisoformat(d["day"]) < settled_before for d in differences)
            description = None
            if differences:
                description = "differs from the provider's statistics: " + "; ".join(
                    f"{d['day']} {d['count']} ours {d['ours']} vs provider {d['provider']}" for d in differences)
            elif skipped and not checked:
                description = "nothing to compare: " + "; ".join(skipped)
            return dg.AssetCheckResult(
                passed=not differences,
                severity=dg.AssetCheckSeverity.ERROR if settled or not differences else dg.AssetCheckSeverity.WARN,
                description=description,
                metadata={
                    "days_checked": dg.IntMetadataValue(checked),
                    "days_skipped": dg.IntMetadataValue(len(skipped)),
                    "days_differing": dg.IntMetadataValue(len({d["day"] for d in differences})),
                    "tolerance": dg.FloatMetadataValue(metrics.reconciliation_tolerance),
                    "differences": dg.MetadataValue.json(differences),
                    "skipped": dg.MetadataValue.text("\n".join(skipped) or "none"),
                },
            )

    return [
        unique_check(ONE_ROW_PER_SERIAL_NO, MESSAGE_STATUS, "One row per SerialNo in marts.message_status."),
        unique_check(ONE_ROW_PER_GROUP, DELIVERY_DAILY,
                     "One row per (day, iso_code, sign_name, template_id) in marts.delivery_daily, nulls equal."),
        unique_check(ONE_ROW_PER_REPLY, REPLIES, "One row per reply (record_key) in marts.replies."),
        allowed_report_status,
        receipt_coverage,
        matches_provider_statistics,
    ]


def _today(timezone: str) -> dt.date:
    return dt.datetime.now(ZoneInfo(timezone)).date()


def _jsonable(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


def _key_sql(table: str, columns: tuple[str, ...]) -> tuple[str, str]:
    """(rows and distinct keys, the most repeated keys); group by and distinct treat nulls as equal."""
    cols = ", ".join(columns)
    totals = f"select count(*), (select count(*) from (select distinct {cols} from {table})) from {table}"
    repeated = (f"select {cols}, count(*) as n from {table} group by {cols} having count(*) > 1 "
                f"order by n desc, {cols} limit 20")
    return totals, repeated
