"""Daily partitions in SMSLEDGER_TIMEZONE from SMSLEDGER_START_DATE, read as day ranges."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg


@dataclasses.dataclass(frozen=True)
class DayRange:
    """Days [first, last] in a time zone, and the UTC instants that bound them."""

    first: dt.date
    last: dt.date
    tz: ZoneInfo

    @property
    def start(self) -> dt.datetime:
        return dt.datetime.combine(self.first, dt.time(0), self.tz).astimezone(dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """Exclusive."""
        return dt.datetime.combine(self.last + dt.timedelta(days=1), dt.time(0), self.tz).astimezone(dt.UTC)

    def days(self) -> list[dt.date]:
        return [self.first + dt.timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    def params(self) -> dict[str, object]:
        """Bound parameters of the SQL files: the days and their UTC bounds, in seconds too."""
        return {
            "first_day": self.first,
            "last_day": self.last,
            "start": self.start,
            "end": self.end,
            "start_s": int(self.start.timestamp()),
            "end_s": int(self.end.timestamp()),
        }


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
