"""Raw records of a range of days, normalized (E.164, UTC) with polars, into the staging tables.

A message belongs to the day it was sent (from the sends log) or, when the log does not know it,
to the day of its first receipt. Each call rewrites exactly the slice of its days, in one
transaction, so materializing a partition twice gives the same rows.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import duckdb
import phonenumbers
import polars as pl

from pipelines.config import DEMO_SDK_APP_ID
from pipelines.days import DayRange
from pipelines.ingest import callbacks
from pipelines.normalize.phones import normalize_phones
from pipelines.normalize.timestamps import unix_seconds_to_utc
from pipelines.warehouse import lake
from pipelines.warehouse.db import insert_frame, memory_limited, registered, sql_text, transaction


@dataclasses.dataclass
class StagingReport:
    sends: int = 0
    messages: int = 0
    receipts: int = 0
    orphan_messages: int = 0  # messages missing from the sends log, placed by their first receipt
    conversions: int = 0
    replies: int = 0
    flagged_times: int = 0  # timestamps converted (milliseconds) or nulled (zero, far future)
    invalid_numbers: int = 0
    unusable_send_times: int = 0


def _local_date(column: str, tz: ZoneInfo) -> pl.Expr:
    return pl.col(column).dt.convert_time_zone(str(tz)).dt.date()


_PHONE_KEY = ("phone_number", "country_code_in", "subscriber_number")
_NORMALIZER = f"phonenumbers {phonenumbers.__version__}"


def _phones(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame) -> pl.DataFrame:
    """E.164, calling code, region and validity from PhoneNumber (+ CountryCode, SubscriberNumber),
    added to `frame` (its country_code column, if any, is the raw one and is replaced).

    Each distinct number is normalized once, ever: staging.phone_numbers keeps the results, so a
    day that is staged again, and the same numbers on other days, cost a join instead of a parse."""
    had_subscriber = "subscriber_number" in frame.columns
    keys = frame.select(
        pl.col("phone_number").cast(pl.Utf8),
        (pl.col("country_code") if "country_code" in frame.columns else pl.lit(None)).cast(pl.Utf8).alias("country_code_in"),
        (pl.col("subscriber_number") if "subscriber_number" in frame.columns else pl.lit(None)).cast(pl.Utf8)
        .alias("subscriber_number"),
    )
    # the outputs replace same-named inputs, as normalize_phones does (the sends log's IsoCode)
    frame = frame.drop("phone_e164", "country_code", "iso_code", "phone_valid", strict=False).with_columns(keys["country_code_in"], keys["subscriber_number"])
    keys = keys.unique()
    with registered(con, "_phone_keys", keys):
        _normalize_numbers(con)
        known = con.execute(sql_text("staging/phone_numbers_of"), {"normalizer": _NORMALIZER}).pl()
    out = frame.join(known, on=list(_PHONE_KEY), how="left", nulls_equal=True, maintain_order="left")
    return out.drop("country_code_in", *([] if had_subscriber else ["subscriber_number"]))


# Rows of distinct times or numbers handed to polars at a time (a day of millisecond times can
# hold as many distinct times as messages).
NORMALIZE_BATCH = 250_000
# DuckDB's memory while days are staged: the window's rows wait in temp tables, and the joins and
# inserts spill to DuckDB's temp directory beyond it.
DUCKDB_MEMORY_LIMIT = "512MB"
_WINDOW_TABLES = ("_stage_sends", "_stage_orphans", "_stage_receipts", "_stage_conversions", "_stage_raw_times",
                  "_stage_times", "_phone_keys", "_stage_phones", "_stage_orphan_days")


@lake.retry_conflicts
def build_messages(con: duckdb.DuckDBPyConnection, days: DayRange, first_app: str = DEMO_SDK_APP_ID) -> StagingReport:
    """Rewrite staging.sends, staging.receipts and staging.conversions for the days, in one
    transaction. A message is (sms_sdk_app_id, serial_no); a sends-log row that does not say its
    application is `first_app`'s.

    The rows stay in DuckDB: the window's raw rows are copied once into temp tables (spilled to
    disk when large), polars converts each distinct time and normalizes each number not seen
    before, a batch at a time, and SQL joins them back. Memory is bounded by DuckDB's limit and
    the batch, not by the size of the day."""
    report = StagingReport()
    params = {**days.dates(), "tz": str(days.tz)}
    with memory_limited(con, DUCKDB_MEMORY_LIMIT):
        try:
            with transaction(con):
                con.execute("create or replace temp table _stage_sends as " + sql_text("staging/sends_for_days"),
                            {**days.seconds(), "now_s": int(time.time()), "first_app": first_app})
                con.execute("create or replace temp table _stage_orphans as " + sql_text("staging/orphan_receipts"),
                            {**days.instants(), **days.seconds(), "first_app": first_app})
                con.execute(sql_text("staging/window_receipts"))
                _convert_times(con)
                _normalize_numbers(con)
                con.execute("create or replace temp table _stage_phones as " + sql_text("staging/phone_numbers_of"),
                            {"normalizer": _NORMALIZER})
                _inserted(con, sql_text("staging/orphan_days"), params)
                for table in ("staging.sends", "staging.receipts", "staging.conversions"):
                    con.execute(f"delete from {table} where send_date between $first_day and $last_day", days.dates())
                report.sends = _inserted(con, sql_text("staging/insert_sends"), params)
                report.receipts = _inserted(con, sql_text("staging/insert_receipts"), params)
                report.conversions = _inserted(con, sql_text("staging/insert_conversions"), params)
                report.unusable_send_times, report.orphan_messages, report.messages = con.execute(
                    "select (select count(*) from _stage_sends s left join _stage_times t on t.t_raw = s.send_time "
                    "        where t.t_utc is null), "
                    "(select count(*) from _stage_orphan_days), "
                    "(select count(*) from _stage_orphan_days) + (select count(*) from staging.sends "
                    "  where send_date between $first_day and $last_day and serial_no <> '')", days.dates()).fetchone()
                report.flagged_times, report.invalid_numbers = con.execute(
                    "select count(receive_time_flag), count(*) filter (not phone_valid) from staging.receipts "
                    "where send_date between $first_day and $last_day", days.dates()).fetchone()
        finally:
            for name in _WINDOW_TABLES:
                con.execute(f"drop table if exists temp.{name}")
    return report


def _inserted(con: duckdb.DuckDBPyConnection, sql: str, params: dict) -> int:
    """Run an insert with those of `params` it names; the rows it inserted."""
    return con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).fetchone()[0]


def _batches(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> Iterator[pl.DataFrame]:
    """The rows of `table` as polars frames of at most about NORMALIZE_BATCH rows (split by a hash
    of `columns`, so that each query stands alone: no result stays open while others run)."""
    rows = con.execute(f"select count(*) from {table}").fetchone()[0]
    parts = -(-rows // NORMALIZE_BATCH)
    for part in range(parts):
        yield con.execute(f"select {columns} from {table} where hash({columns}) % {parts} = {part}").pl()


def _convert_times(con: duckdb.DuckDBPyConnection) -> None:
    """_stage_times (t_raw, t_utc, flag): each distinct time of _stage_raw_times converted to UTC by
    pipelines/normalize/timestamps.py (seconds or milliseconds; unusable ones null, with why)."""
    con.execute("create or replace temp table _stage_times (t_raw bigint, t_utc timestamptz, flag varchar)")
    for raw in _batches(con, "_stage_raw_times", "t_raw"):
        converted = unix_seconds_to_utc(raw, "t_raw", out="t_utc", flag="flag")
        insert_frame(con, "_stage_times", converted)


def _normalize_numbers(con: duckdb.DuckDBPyConnection) -> None:
    """Add to staging.phone_numbers the numbers of _phone_keys it does not hold for this normalizer."""
    params = {"normalizer": _NORMALIZER}
    con.execute("create or replace temp table _phone_missing as " + sql_text("staging/phone_numbers_missing"), params)
    try:
        for missing in _batches(con, "_phone_missing", "phone_number, country_code_in, subscriber_number"):
            normalized = normalize_phones(missing, "phone_number", "country_code_in", subscriber_number="subscriber_number")
            with registered(con, "_phone_new", normalized):
                con.execute(sql_text("staging/phone_numbers_add"), params)
    finally:
        con.execute("drop table if exists temp._phone_missing")


def replace_slice(con: duckdb.DuckDBPyConnection, table: str, date_column: str, days: DayRange, frame: pl.DataFrame) -> None:
    """Delete the days' rows of `table` and insert `frame`, by column name (inside the caller's
    transaction)."""
    con.execute(f"delete from {table} where {date_column} between $first_day and $last_day", days.dates())
    insert_frame(con, table, frame)


def _unsaid_applications(replies: pl.DataFrame) -> pl.DataFrame:
    """Replies pushed without an application (callbacks.UNSAID_APPLICATION: a receiver serving
    several): one the provider also handed out by pull is that pulled row (it knows its
    application: same record_key, as both paths key alike); the others get a null application,
    which marts/replies replaces with the application of the message the reply answers."""
    unsaid = pl.col("sms_sdk_app_id") == callbacks.UNSAID_APPLICATION
    if not replies.select(unsaid.any()).item():
        return replies
    said_keys = replies.filter(~unsaid)["record_key"].implode()
    return replies.filter(~(unsaid & pl.col("record_key").is_in(said_keys))).with_columns(
        sms_sdk_app_id=pl.when(unsaid).then(None).otherwise(pl.col("sms_sdk_app_id")))


@lake.retry_conflicts
def build_replies(con: duckdb.DuckDBPyConnection, days: DayRange) -> StagingReport:
    """Rewrite staging.replies for the days (a reply belongs to the day it was sent)."""
    report = StagingReport()
    replies = _unsaid_applications(con.execute(sql_text("staging/replies_for_days"), days.seconds()).pl())
    replies = unix_seconds_to_utc(replies, "reply_time", out="reply_at", flag="reply_time_flag")
    replies = (
        replies.filter(pl.col("reply_at").is_not_null())
        .with_columns(reply_date=_local_date("reply_at", days.tz))
        .filter(pl.col("reply_date").is_between(days.first, days.last))
    )
    replies = _phones(con, replies)
    report.replies = replies.height
    report.flagged_times = replies.filter(pl.col("reply_time_flag").is_not_null()).height
    staged = replies.select(
        "reply_date", "record_key", "phone_number", "phone_e164", "country_code", "iso_code", "phone_valid",
        "sign_name", "extend_code", "reply_content", pl.col("reply_at").alias("reply_time"), "reply_time_flag",
        "action", "pulled_at", "sms_sdk_app_id",
    )
    with transaction(con):
        replace_slice(con, "staging.replies", "reply_date", days, staged)
    return report
