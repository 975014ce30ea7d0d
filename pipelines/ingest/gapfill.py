"""Gap filling: receipts and replies the queues never gave us, fetched by phone number.

A queue record handed out in a response that never reached the spool (a timeout, a reset, a
crash) is gone from the queue. The by-number pulls are re-readable for 7 days, so we ask again,
and only for the numbers that can be missing something:

* receipts: sends-log messages of the day without a receipt, or with only failure receipts when
  a receipt pull was indeterminate after them (sql/select_sends_missing_receipts.sql);
* replies: numbers with a message delivered in the 72 hours before an indeterminate reply pull
  (sql/select_numbers_for_lost_replies.sql).

Messages older than the provider's 7-day retention are counted, not fetched. Planning reads the
warehouse; fetching only writes the spool, so the warehouse is not held during network calls.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import polars as pl

from pipelines.normalize.phones import normalize_phones
from pipelines.normalize.timestamps import unix_seconds_to_utc
from pipelines.tencent import actions as A
from pipelines.tencent.client import SmsApiClient
from pipelines.tencent.errors import TencentCloudError, TransportError
from pipelines.warehouse.db import sql_text
from pipelines.spool import Spool
from pipelines.days import DayRange

log = logging.getLogger(__name__)

# Stay clear of the 7-day edge: the provider's clock and ours may differ by a few minutes.
RETENTION_MARGIN_SECONDS = 600


@dataclasses.dataclass
class GapFillReport:
    missing_messages: int = 0  # sends-log messages that may lack receipts before gap filling
    numbers_asked: int = 0  # numbers asked for receipts
    reply_numbers_asked: int = 0  # numbers asked for replies lost in indeterminate reply pulls
    pages: int = 0
    records: int = 0
    beyond_retention: int = 0  # messages too old for the by-number pulls
    invalid_numbers: int = 0  # messages whose number could not be normalized to E.164
    failed_numbers: int = 0  # numbers whose pull failed after retries (logged)


@dataclasses.dataclass
class GapFillPlan:
    """(phone_e164, first_sent) to ask, per by-number action, and what could not be asked."""

    asks: dict[str, pl.DataFrame]
    report: GapFillReport


def _windows(frame: pl.DataFrame, days: DayRange, oldest: int) -> tuple[pl.DataFrame, int, int]:
    """Per E.164 number its first send second; (asks, messages beyond retention, invalid numbers)."""
    frame = unix_seconds_to_utc(frame, "send_time", out="sent_at", flag="_flag")
    frame = frame.filter(
        pl.col("sent_at").is_not_null()
        & pl.col("sent_at").dt.convert_time_zone(str(days.tz)).dt.date().is_between(days.first, days.last)
    )
    if frame.is_empty():
        return pl.DataFrame(schema={"phone_e164": pl.Utf8, "first_sent": pl.Int64}), 0, 0
    frame = normalize_phones(frame, "phone_number", None)
    invalid = frame.filter(pl.col("phone_e164").is_null()).height
    per_number = (
        frame.filter(pl.col("phone_e164").is_not_null())
        .with_columns(sent_s=pl.col("sent_at").dt.epoch("s"))
        .group_by("phone_e164")
        .agg(first_sent=pl.col("sent_s").min(), last_sent=pl.col("sent_s").max(), messages=pl.len())
    )
    beyond = int(per_number.filter(pl.col("last_sent") < oldest)["messages"].sum() or 0)
    asks = per_number.filter(pl.col("last_sent") >= oldest).select("phone_e164", "first_sent").sort("phone_e164")
    return asks, beyond, invalid


def plan_gap_fill(con: duckdb.DuckDBPyConnection, days: DayRange, *, now: float | None = None,
                  reply_window_hours: int = 72) -> GapFillPlan:
    report = GapFillReport()
    now = time.time() if now is None else now
    oldest = int(now) - A.BY_NUMBER_RETENTION_SECONDS + RETENTION_MARGIN_SECONDS
    missing = con.execute(sql_text("gapfill/sends_missing_receipts"), days.seconds()).pl()
    receipts, report.beyond_retention, report.invalid_numbers = _windows(missing, days, oldest)
    report.missing_messages = missing.height
    report.numbers_asked = receipts.height
    lost = con.execute(sql_text("gapfill/numbers_for_lost_replies"), {**days.seconds(), "window_hours": reply_window_hours}).pl()
    replies, _, _ = _windows(lost, days, oldest)
    report.reply_numbers_asked = replies.height
    return GapFillPlan({A.PULL_SEND_STATUS_BY_NUMBER: receipts, A.PULL_REPLY_STATUS_BY_NUMBER: replies}, report)


def fetch_gaps(client: SmsApiClient, spool: Spool, plan: GapFillPlan, *, workers: int = 4,
               now: float | None = None) -> GapFillReport:
    """Spool the by-number pages of the plan; the caller loads the spool."""
    report = plan.report
    now = time.time() if now is None else now
    oldest = int(now) - A.BY_NUMBER_RETENTION_SECONDS + RETENTION_MARGIN_SECONDS

    def fetch(action: str, number: str, first_sent: int) -> tuple[int, int, bool]:
        pages = records = 0
        try:
            for body, page in client.by_number_pages(action, number, max(first_sent, oldest), int(now)):
                spool.write(action, body)
                pages += 1
                records += len(page.records)
        except (TencentCloudError, TransportError) as exc:
            log.warning("gap fill %s for %s…: %s", action, number[:6], exc)
            return pages, records, False
        return pages, records, True

    jobs = [(action, number, first) for action, asks in plan.asks.items() for number, first in asks.iter_rows()]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gapfill") as pool:
        for pages, records, ok in pool.map(lambda job: fetch(*job), jobs):
            report.pages += pages
            report.records += records
            report.failed_numbers += not ok
    return report
