"""The provider's own statistics, pulled per provider hour into raw.statistics_hourly.

SendStatusStatistics and CallbackStatusStatistics return one aggregate for a range of
`yyyymmddhh` hours in an undocumented zone (Beijing time by the evidence, so
SMSLEDGER_PROVIDER_TIMEZONE). Asking hour by hour gives a series that any partition time zone
can be summed from. Counts change while late receipts arrive, so a re-pull replaces the hour.
Each application has its own statistics: a row is one application's hour.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import polars as pl

from pipelines.normalize.timestamps import provider_hour_string
from pipelines.tencent.client import SmsApiClient
from pipelines.tencent.errors import TencentCloudError, TransportError, Unreachable
from pipelines.warehouse import lake
from pipelines.warehouse.db import transaction, upsert_frame
from pipelines.days import DayRange

SEND_FIELDS = {"FeeCount": "fee_count", "RequestCount": "request_count", "RequestSuccessCount": "request_success_count"}
CALLBACK_FIELDS = {
    "CallbackCount": "callback_count",
    "CallbackSuccessCount": "callback_success_count",
    "CallbackFailCount": "callback_fail_count",
    "RequestSuccessCount": "callback_request_success_count",
    "InternalErrorCount": "internal_error_count",
    "InvalidNumberCount": "invalid_number_count",
    "ShutdownErrorCount": "shutdown_error_count",
    "BlackListCount": "blacklist_count",
    "FrequencyLimitCount": "frequency_limit_count",
}


@dataclasses.dataclass
class StatisticsReport:
    hours: int = 0
    requests: int = 0
    request_success_count: int = 0
    callback_count: int = 0


def hours_of(days: DayRange, *, now: dt.datetime | None = None) -> list[dt.datetime]:
    """UTC starts of the hours that cover the days, up to the current hour."""
    now = now or dt.datetime.now(dt.UTC)
    hour = days.start.replace(minute=0, second=0, microsecond=0)
    out = []
    while hour < days.end and hour <= now:
        out.append(hour)
        hour += dt.timedelta(hours=1)
    return out


@dataclasses.dataclass
class FetchedStatistics:
    """The hours the provider answered, one row each, and a line per hour it did not."""

    frame: pl.DataFrame
    problems: list[str]


_SETTLED_HOURS = """
with pulled as (
    select hour, pulled_at from raw.statistics_hourly
    where hour >= $start and hour < $end and sms_sdk_app_id = $app and pulled_at >= hour + $settle
),
since_pulled as (  -- receipts pulled (or pushed) after the oldest of those pulls
    select serial_no, pulled_at from raw.send_status
    where sms_sdk_app_id = $app and pulled_at > (select min(pulled_at) from pulled)
),
moved as (  -- the hours (of send time, as the provider counts them) those receipts belong to
    select to_timestamp(floor(epoch(s.sent_at) / 3600) * 3600) as hour, max(r.pulled_at) as last_receipt
    from since_pulled r join staging.sends s on s.serial_no = r.serial_no and s.sms_sdk_app_id = $app
    where s.send_date between $first_day and $last_day
    group by all
)
select p.hour from pulled p left join moved m on m.hour = p.hour
where m.last_receipt is null or m.last_receipt <= p.pulled_at
"""


def settled_hours(con: duckdb.DuckDBPyConnection, days: DayRange, settle: dt.timedelta,
                  sdk_app_id: str) -> set[dt.datetime]:
    """Hours of the days whose statistics of the application need not be asked again: pulled once
    they had settled (`settle` after the hour, when late receipts are not expected any more), and no
    receipt of a message sent in the hour has reached us since that pull.

    The second rule is what keeps the counts true when a receipt comes later than expected (or the
    provider's clock is not ours, as with a simulator whose clock stands in the past): our receipt
    counts for the hour move, so the provider's must be asked again. It costs one re-pull of the
    hours that did move, and reads only the receipts pulled since the oldest of the days' pulls and
    the days' sends."""
    rows = con.execute(_SETTLED_HOURS, {**days.instants(), **days.dates(), "settle": settle, "app": sdk_app_id}).fetchall()
    return {hour for (hour,) in rows}


def fetch_statistics(client: SmsApiClient, days: DayRange, *, workers: int = 4,
                     skip: set[dt.datetime] = frozenset()) -> FetchedStatistics:
    """Both statistics of every hour of the days but those in `skip` (no database needed). An
    hour that still fails after the client's retries is left out and named; errors that no retry
    fixes (credentials, an unreachable endpoint) are raised."""
    hours = [hour for hour in hours_of(days) if hour not in skip]

    def one(hour: dt.datetime) -> dict | str:
        try:
            send = client.send_status_statistics(hour, hour)
            callback = client.callback_status_statistics(hour, hour)
        except Unreachable:
            raise
        except TencentCloudError as exc:
            if not exc.retryable:
                raise
            return f"{hour:%Y-%m-%d %H:00Z}: {exc}"
        except TransportError as exc:
            return f"{hour:%Y-%m-%d %H:00Z}: {exc}"
        row = {"sms_sdk_app_id": client.sdk_app_id, "provider_hour": provider_hour_string(hour, client.provider_tz),
               "hour": hour}
        row.update({col: send.counters.get(api, 0) for api, col in SEND_FIELDS.items()})
        row.update({col: callback.counters.get(api, 0) for api, col in CALLBACK_FIELDS.items()})
        row["send_request_id"] = send.request_ids[0]
        row["callback_request_id"] = callback.request_ids[0]
        return row

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="statistics") as pool:
        answers = list(pool.map(one, hours))
    # Hours still failing after the client's retries were most often throttled while the workers
    # (and other runs) asked at once: each is asked once more, one at a time, before it is named.
    answers = [one(hour) if isinstance(answer, str) else answer for hour, answer in zip(hours, answers)]
    rows = [a for a in answers if isinstance(a, dict)]
    problems = [a for a in answers if isinstance(a, str)]
    if not rows:
        return FetchedStatistics(pl.DataFrame(), problems)
    frame = pl.DataFrame(rows).with_columns(
        pl.col("hour").cast(pl.Datetime("us", "UTC")),
        pulled_at=pl.lit(dt.datetime.fromtimestamp(time.time(), dt.UTC)).cast(pl.Datetime("us", "UTC")),
    )
    return FetchedStatistics(frame, problems)


@lake.retry_conflicts
def store_statistics(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> StatisticsReport:
    """Fetched hours into raw.statistics_hourly: a re-pull replaces the application's hour (delete
    and insert in one transaction: no `insert or replace`, which a DuckLake catalog lacks)."""
    report = StatisticsReport(hours=frame.height, requests=2 * frame.height)
    if frame.is_empty():
        return report
    report.request_success_count = int(frame["request_success_count"].sum())
    report.callback_count = int(frame["callback_count"].sum())
    with transaction(con):
        upsert_frame(con, "raw.statistics_hourly", frame, key=["sms_sdk_app_id", "provider_hour"])
    return report
