"""The warehouse's maintenance as a Dagster asset, its job and its weekly schedule
(pipelines/warehouse/maintenance.py does the work; `smsledger lake-maintenance` is the same from
the command line).

The schedule is off by default, as the drain and daily schedules are: a deployment turns on the
schedules it runs, and this one goes with the daily one. Weekly is enough for a daily run's
commits (a week makes a few hundred snapshots and small files per table), and its step holds a
slot of the warehouse pool like any writer, so on a DuckDB file it never runs beside another.
"""

import datetime as dt

import dagster as dg

from assets.options import WAREHOUSE_POOL
from assets.resources import WarehouseResource
from pipelines.config import MAX_RETENTION_DAYS, Settings
from pipelines.warehouse.db import connect
from pipelines.warehouse.maintenance import DEFAULT_GRACE, maintain

MAINTENANCE_JOB = "lake_maintenance"
WEEKLY_CRON = "0 3 * * 0"  # Sundays at 03:00 in SMSLEDGER_TIMEZONE, after the daily run


class MaintenanceConfig(dg.Config):
    """Overrides for one run, from the launchpad."""

    retention_days: float | None = None  # None: SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS
    grace_hours: float = DEFAULT_GRACE / dt.timedelta(hours=1)


def maintenance_definitions(settings: Settings) -> tuple:
    """The asset, its job and its schedule; the retention is SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS."""
    default_retention_days = settings.lake_snapshot_retention_days

    @dg.asset(key=["warehouse", "maintenance"], group_name="housekeeping", kinds={"duckdb"}, pool=WAREHOUSE_POOL)
    def lake_maintenance(context: dg.AssetExecutionContext, config: MaintenanceConfig,
                         warehouse: WarehouseResource) -> dg.MaterializeResult:
        """On a lake: small files merged, snapshots older than the retention expired, files no
        snapshot references deleted once older than the grace period; on a DuckDB file, CHECKPOINT.
        What it removed (files, snapshots, bytes) is in the metadata."""
        retention_days = default_retention_days if config.retention_days is None else config.retention_days
        if not (0 <= retention_days <= MAX_RETENTION_DAYS and 0 <= config.grace_hours <= MAX_RETENTION_DAYS * 24):
            raise dg.Failure(f"retention_days must be 0 to {MAX_RETENTION_DAYS} and grace_hours 0 to "
                             f"{MAX_RETENTION_DAYS * 24}", allow_retries=False)
        con = connect(warehouse.location(), wait_seconds=warehouse.lock_wait_seconds)
        try:
            report = maintain(con, retention=dt.timedelta(days=retention_days),
                              grace=dt.timedelta(hours=config.grace_hours))
        finally:
            con.close()
        for line in report.lines():
            context.log.info(line)
        return dg.MaterializeResult(metadata=report.metadata())

    job = dg.define_asset_job(
        MAINTENANCE_JOB, selection=dg.AssetSelection.assets(lake_maintenance),
        description="Compact the warehouse: merge a lake's small files, expire its old snapshots, delete the files "
                    "none references (CHECKPOINT on a DuckDB file).",
    )
    schedule = dg.ScheduleDefinition(
        name="lake_maintenance_weekly", job=job, cron_schedule=WEEKLY_CRON, execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.STOPPED,
    )
    return lake_maintenance, job, schedule
