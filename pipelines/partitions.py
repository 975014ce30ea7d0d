"""Daily partitions in SMSLEDGER_TIMEZONE from SMSLEDGER_START_DATE, read as day ranges."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from pipelines.warehouse.staging import DayRange


def daily_partitions(start_date: dt.date, timezone: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone=timezone)


def day_range(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, timezone: str) -> DayRange:
    """The days of the run: one partition, or a whole range in a single-run backfill. Read from
    the partition time window, never by slicing keys."""
    window = context.partition_time_window
    tz = ZoneInfo(timezone)
    first = window.start.astimezone(tz).date()
    last = (window.end.astimezone(tz) - dt.timedelta(seconds=1)).date()
    return DayRange(first, last, tz)
