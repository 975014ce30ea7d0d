"""Marts users query: one row per message and per reply, and the daily metrics built on them."""

from __future__ import annotations

import dagster as dg

from assets.ingestion import WAREHOUSE_POOL
from pipelines.partitions import day_range
from pipelines.resources import MetricsConfig, WarehouseResource
from pipelines.warehouse.marts import rebuild


def mart_assets(partitions: dg.DailyPartitionsDefinition, reply_lookback_days: int = 3):
    @dg.asset(key=["marts", "message_status"], deps=[["staging", "messages"]], partitions_def=partitions,
              group_name="marts", kinds={"duckdb"}, pool=WAREHOUSE_POOL, backfill_policy=dg.BackfillPolicy.single_run())
    def message_status(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                       metrics: MetricsConfig) -> dg.MaterializeResult:
        """One row per SerialNo: the send (sends log), the final receipt (latest by receive time),
        latency, and the first conversion within the attribution window."""
        days = day_range(context, metrics.timezone)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.message_status", days, attribution_days=metrics.conversion_window_days)
            delivered, failed, pending, converted = con.execute(
                "select count(*) filter (report_status = 'SUCCESS'), count(*) filter (report_status = 'FAIL'), "
                "count(*) filter (report_status is null), count(converted_at) "
                "from marts.message_status where send_date between $a and $b", {"a": days.first, "b": days.last},
            ).fetchone()
        return dg.MaterializeResult(metadata={
            "rows": rows, "delivered": delivered, "failed": failed, "pending": pending, "converted": converted,
            "delivery_rate": dg.FloatMetadataValue(delivered / rows if rows else None),
        })

    @dg.asset(
        key=["marts", "replies"],
        deps=[
            ["staging", "replies"],
            dg.AssetDep(["marts", "message_status"],
                        partition_mapping=dg.TimeWindowPartitionMapping(start_offset=-reply_lookback_days, end_offset=0)),
        ],
        partitions_def=partitions, group_name="marts", kinds={"duckdb"}, pool=WAREHOUSE_POOL,
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def replies(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                metrics: MetricsConfig) -> dg.MaterializeResult:
        """One row per reply, attributed to the latest message delivered to the same number (same
        signature when known) in the 72 hours before it; opt-outs flagged."""
        days = day_range(context, metrics.timezone)
        with warehouse.connect() as con:
            rows = rebuild(con, "marts.replies", days, attribution_hours=metrics.reply_window_hours,
                           opt_out_words=[w.lower() for w in metrics.opt_out_words])
            attributed, opt_outs = con.execute(
                "select count(serial_no), count(*) filter (is_opt_out) from marts.replies "
                "where reply_date between $a and $b", {"a": days.first, "b": days.last},
            ).fetchone()
        return dg.MaterializeResult(metadata={"rows": rows, "attributed": attributed, "opt_outs": opt_outs})

    return [message_status, replies]
