"""Provider times to UTC, vectorized over polars frames.

The warehouse stores every time as UTC (`TIMESTAMPTZ`). Two provider shapes need converting:

- record times (`UserReceiveTime`, `ReplyTime`, the sends log's `SendTime`, `ConversionTime`) are
  unix seconds, but a dirty feed also writes them as strings, in milliseconds or microseconds
  (the 2019 API rejected millisecond times with "invalid unix start or end time", so clients did
  send them), as 0 for "unknown", or as junk. A bad time must not become a plausible-looking
  date, so every conversion that is not plain seconds is flagged with its reason.
- statistics hours (`SendStatusStatistics`, `CallbackStatusStatistics`) are `yyyymmddhh` strings
  in an undocumented zone, assumed to be Beijing time (`SMSLEDGER_PROVIDER_TIMEZONE`). smsledger
  asks for UTC hours, so it only ever writes these strings (`provider_hour_string`), never reads
  them.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TypeVar

import polars as pl

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

UTC_DATETIME = pl.Datetime("us", "UTC")

# Unit guesses by magnitude: 1e11 seconds is the year 5138 and 1e11 milliseconds is 1973, so
# the ranges of plausible seconds, milliseconds and microseconds do not overlap.
MILLISECONDS_FROM = 1e11
_MICROSECONDS_FROM = 1e14
_EARLIEST = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def unix_seconds_to_utc(
    frame: FrameT,
    column: str,
    *,
    out: str,
    flag: str,
    now: dt.datetime | None = None,
    max_future: dt.timedelta = dt.timedelta(days=1),
) -> FrameT:
    """Add `out` (Datetime("us", "UTC")) and `flag` (Utf8) converted from unix times in `column`.

    `column` may be integer, float, Utf8 (digits, decimals, or junk) or all-null. `flag` is null
    when the value is fine (or the input is null or blank) and otherwise one of:

    - "milliseconds" / "microseconds": the value was ≥ 1e11 / ≥ 1e14 and has been converted
      (the timestamp is kept);
    - "zero", "negative": no timestamp;
    - "not_a_number": text that is not a number, NaN or infinity; no timestamp;
    - "far_future": later than `now + max_future` after unit conversion; no timestamp;
    - "before_2000": earlier than 2000-01-01 UTC after unit conversion; no timestamp.

    `now` defaults to the time of this call; for a LazyFrame it is fixed then, not at collect.
    `out` and `flag` replace same-named columns; `out` may be `column` itself.
    """
    now = dt.datetime.now(dt.UTC) if now is None else now
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    dtype = frame.collect_schema()[column]
    raw = pl.col(column)
    if dtype == pl.Utf8:
        text = raw.str.strip_chars()
        present = raw.is_not_null() & (text != "")
        value = text.cast(pl.Float64, strict=False)
    elif dtype.is_numeric() or dtype == pl.Null:
        present = raw.is_not_null()
        # Float64 is exact for every integer below 2**53, which covers all accepted times down to
        # the microsecond; larger values are far in the future either way.
        value = raw.cast(pl.Float64)
    else:
        raise TypeError(f"{column!r} is {dtype}; expected unix times as integers, floats or strings")

    scale = (
        pl.when(value >= _MICROSECONDS_FROM)
        .then(1.0)
        .when(value >= MILLISECONDS_FROM)
        .then(1e3)
        .otherwise(1e6)
    )
    micros = value * scale
    reason = (
        pl.when(~present)
        .then(None)
        .when(value.is_null() | ~value.is_finite())
        .then(pl.lit("not_a_number"))
        .when(value == 0)
        .then(pl.lit("zero"))
        .when(value < 0)
        .then(pl.lit("negative"))
        .when(micros > _micros_since_epoch(now + max_future))
        .then(pl.lit("far_future"))
        .when(micros < _micros_since_epoch(_EARLIEST))
        .then(pl.lit("before_2000"))
        .when(value >= _MICROSECONDS_FROM)
        .then(pl.lit("microseconds"))
        .when(value >= MILLISECONDS_FROM)
        .then(pl.lit("milliseconds"))
    )
    accepted = present & (reason.is_null() | reason.is_in(["milliseconds", "microseconds"]))
    timestamp = pl.when(accepted).then(micros.round(0).cast(pl.Int64, strict=False)).cast(UTC_DATETIME)
    return frame.with_columns(timestamp.alias(out), reason.cast(pl.Utf8).alias(flag))


def provider_hour_string(moment: dt.datetime, tz: str | zoneinfo.ZoneInfo) -> str:
    """The provider's `yyyymmddhh` for the hour of `moment` (timezone-aware) in `tz`."""
    if moment.tzinfo is None:
        raise ValueError(f"statistics times must be timezone-aware, got naive {moment.isoformat()}")
    local = moment.astimezone(_zone(tz))
    return f"{local.year:04d}{local.month:02d}{local.day:02d}{local.hour:02d}"


def _zone(tz: str | zoneinfo.ZoneInfo) -> zoneinfo.ZoneInfo:
    return tz if isinstance(tz, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo(tz)


def _micros_since_epoch(moment: dt.datetime) -> int:
    return (moment - _EPOCH) // dt.timedelta(microseconds=1)
