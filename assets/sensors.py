"""Sensors of pushed receipts: load them as they arrive, then rebuild the days they belong to.

`smsledger receive` spools each push (`CallbackSmsStatus` / `CallbackSmsReply` files) before it
answers. `pushed_batches` sees new ones (its cursor is the newest file name it has seen; names
sort by arrival time) and requests a run of `load_spool`, which loads the whole spool. That load
names the send days of the messages whose receipts came by push (metadata `pushed_send_days`),
and `pushed_receipt_days` requests one run of the daily job over those days: a receipt counts
under its message's send day, not the day it arrived. The queue drain keeps running beside them
as reconciliation (the check receipts_by_channel).
"""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from assets.options import PARTITION_RANGE_END, PARTITION_RANGE_START
from pipelines.config import Settings
from pipelines.ingest import callbacks
from pipelines.spool import Spool

LOAD_SPOOL_JOB = "load_spool"


def push_sensors(settings: Settings, load_job: UnresolvedAssetJobDefinition,
                 daily_job: UnresolvedAssetJobDefinition) -> list[dg.SensorDefinition]:

    @dg.sensor(name="pushed_batches", job=load_job, minimum_interval_seconds=15,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description="Push callbacks spooled by `smsledger receive` are loaded within seconds of arriving.")
    def pushed_batches(context: dg.SensorEvaluationContext):
        ready = Spool(settings.spool_dir).ready
        newest = max((f.path.name for f in Spool(settings.spool_dir).pending() if f.action in callbacks.ACTIONS),
                     default=None) if ready.exists() else None
        if newest is None or (context.cursor and newest <= context.cursor):
            return dg.SkipReason("no new push callbacks in the spool")
        context.update_cursor(newest)
        return dg.RunRequest(run_key=f"pushed-{newest}")

    @dg.asset_sensor(name="pushed_receipt_days", asset_key=dg.AssetKey(["raw", "queue_records"]), job=daily_job,
                     minimum_interval_seconds=15, default_status=dg.DefaultSensorStatus.RUNNING,
                     description="After a load with pushed receipts, one run rebuilds the send days of their messages.")
    def pushed_receipt_days(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
        materialization = asset_event.asset_materialization
        pushed = materialization.metadata.get("pushed_send_days") if materialization else None
        days = sorted(dt.date.fromisoformat(day) for day in (pushed.value if pushed else []))
        # Only whole days exist as partitions: today's is built once it has ended.
        latest = dt.datetime.now(ZoneInfo(settings.timezone)).date() - dt.timedelta(days=1)
        days = [day for day in days if settings.start_date <= day <= latest]
        if not days:
            return dg.SkipReason("the load held no pushed receipt of a complete day")
        first, last = days[0].isoformat(), days[-1].isoformat()
        return dg.RunRequest(run_key=f"pushed-days-{asset_event.run_id}",
                             tags={PARTITION_RANGE_START: first, PARTITION_RANGE_END: last})

    return [pushed_batches, pushed_receipt_days]
