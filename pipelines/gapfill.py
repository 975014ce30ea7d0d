"""Gap filling: receipts (and replies) the queues never gave us, fetched by phone number.

A queue record handed out in a response that never reached the spool (a timeout, a reset, a
crash) is gone from the queue. The by-number pulls are re-readable for 7 days, so for the
sends-log messages of a day that have no receipt yet, and only for their numbers, we ask again.
Older days are beyond the provider's retention: they are counted, not fetched.
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
from pipelines.warehouse.spool import Spool
from pipelines.warehouse.staging import DayRange

log = logging.getLogger(__name__)

# Stay clear of the 7-day edge: the provider's clock and ours may differ by a few minutes.
RETENTION_MARGIN_SECONDS = 600


@dataclasses.dataclass
class GapFillReport:
    missing_messages: int = 0  # sends-log messages without any receipt before gap filling
    numbers_asked: int = 0
    pages: int = 0
    records: int = 0
    beyond_retention: int = 0  # messages too old for the by-number pulls
    invalid_numbers: int = 0  # messages whose number could not be normalized to E.164
    failed_numbers: int = 0  # numbers whose pull failed after retries (logged)


def fill_gaps(
    con: duckdb.DuckDBPyConnection,
    client: SmsApiClient,
    spool: Spool,
    days: DayRange,
    *,
    workers: int = 4,
    now: float | None = None,
    replies: bool = True,
) -> GapFillReport:
    """Spool by-number pages for the days' messages that lack receipts; the caller loads the spool."""
    report = GapFillReport()
    now = time.time() if now is None else now
    p = days.params()
    missing = con.execute(sql_text("select_sends_missing_receipts"), {"start_s": p["start_s"], "end_s": p["end_s"]}).pl()
    missing = unix_seconds_to_utc(missing, "send_time", out="sent_at", flag="_flag")
    missing = missing.filter(
        pl.col("sent_at").is_not_null()
        & pl.col("sent_at").dt.convert_time_zone(str(days.tz)).dt.date().is_between(days.first, days.last)
    )
    report.missing_messages = missing.height
    if missing.is_empty():
        return report
    missing = normalize_phones(missing, "phone_number", None)
    report.invalid_numbers = missing.filter(pl.col("phone_e164").is_null()).height
    oldest = int(now) - A.BY_NUMBER_RETENTION_SECONDS + RETENTION_MARGIN_SECONDS
    windows = (
        missing.filter(pl.col("phone_e164").is_not_null())
        .with_columns(sent_s=pl.col("sent_at").dt.epoch("s"))
        .group_by("phone_e164")
        .agg(pl.col("sent_s").min().alias("first_sent"), pl.col("sent_s").max().alias("last_sent"), pl.len().alias("messages"))
    )
    too_old = windows.filter(pl.col("last_sent") < oldest)
    report.beyond_retention = int(too_old["messages"].sum() or 0)
    asked = windows.filter(pl.col("last_sent") >= oldest)
    report.numbers_asked = asked.height

    actions = [A.PULL_SEND_STATUS_BY_NUMBER] + ([A.PULL_REPLY_STATUS_BY_NUMBER] if replies else [])

    def fetch(number: str, first_sent: int) -> tuple[int, int, bool]:
        begin, end = max(first_sent, oldest), int(now)
        pages = records = 0
        try:
            for action in actions:
                for body, page in client.by_number_pages(action, number, begin, end):
                    spool.write(action, body)
                    pages += 1
                    records += len(page.records)
        except (TencentCloudError, TransportError) as exc:
            log.warning("gap fill for %s…: %s", number[:6], exc)
            return pages, records, False
        return pages, records, True

    rows = asked.select("phone_e164", "first_sent").iter_rows()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gapfill") as pool:
        for pages, records, ok in pool.map(lambda row: fetch(*row), rows):
            report.pages += pages
            report.records += records
            report.failed_numbers += not ok
    return report
