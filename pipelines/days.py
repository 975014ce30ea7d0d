"""Days: the daily partitions (SMSLEDGER_TIMEZONE, from SMSLEDGER_START_DATE) and `DayRange`, the
time concept every step works in: a run's days, the UTC instants that bound them, and the exact
parameters each SQL file takes for them.
"""

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

    # The parameters of the SQL files, by the way each file places rows in time. DuckDB refuses a
    # named parameter a statement does not use, so each file gets exactly its own.

    def dates(self) -> dict[str, dt.date]:
        """$first_day, $last_day: rows placed by a DATE of the partition zone."""
        return {"first_day": self.first, "last_day": self.last}

    def instants(self) -> dict[str, dt.datetime]:
        """$start, $end (exclusive): rows placed by a UTC instant."""
        return {"start": self.start, "end": self.end}

    def seconds(self) -> dict[str, int]:
        """$start_s, $end_s (exclusive): rows placed by unix seconds as received."""
        return {"start_s": int(self.start.timestamp()), "end_s": int(self.end.timestamp())}


def daily_partitions(start_date: dt.date, timezone: str) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=start_date.isoformat(), timezone=timezone)


def days_of(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
            partitions: dg.DailyPartitionsDefinition) -> DayRange:
    """The days of a run in the partitions' zone: one partition, or a whole range in a single-run
    backfill. Read from the partition time window, never by slicing keys."""
    window = context.partition_time_window
    tz = ZoneInfo(partitions.timezone)
    first = window.start.astimezone(tz).date()
    last = (window.end.astimezone(tz) - dt.timedelta(seconds=1)).date()
    return DayRange(first, last, tz)
