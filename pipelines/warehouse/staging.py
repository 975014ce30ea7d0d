"""Raw records of a range of days, normalized (E.164, UTC) with polars, into the staging tables.

A message belongs to the day it was sent (from the sends log) or, when the log does not know it,
to the day of its first receipt. Each call rewrites exactly the slice of its days, in one
transaction, so materializing a partition twice gives the same rows.
"""

from __future__ import annotations

import dataclasses
import time
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
from pipelines.warehouse.db import insert_frame, registered, sql_text, transaction


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
    params = {"normalizer": _NORMALIZER}
    with registered(con, "_phone_keys", keys):
        missing = con.execute(sql_text("staging/phone_numbers_missing"), params).pl()
        if missing.height:
            normalized = normalize_phones(missing, "phone_number", "country_code_in", subscriber_number="subscriber_number")
            with registered(con, "_phone_new", normalized):
                con.execute(sql_text("staging/phone_numbers_add"), params)
        known = con.execute(sql_text("staging/phone_numbers_of"), params).pl()
    out = frame.join(known, on=list(_PHONE_KEY), how="left", nulls_equal=True, maintain_order="left")
    return out.drop("country_code_in", *([] if had_subscriber else ["subscriber_number"]))


@lake.retry_conflicts
def build_messages(con: duckdb.DuckDBPyConnection, days: DayRange, first_app: str = DEMO_SDK_APP_ID) -> StagingReport:
    """Rewrite staging.sends, staging.receipts and staging.conversions for the days. A message is
    (sms_sdk_app_id, serial_no); a sends-log row that does not say its application is `first_app`'s."""
    report = StagingReport()
    tz = days.tz

    sends = con.execute(sql_text("staging/sends_for_days"), {**days.seconds(), "now_s": int(time.time()),
                                                             "first_app": first_app}).pl()
    sends = unix_seconds_to_utc(sends, "send_time", out="sent_at", flag="sent_at_flag")
    report.unusable_send_times = sends.filter(pl.col("sent_at").is_null()).height
    sends = (
        sends.filter(pl.col("sent_at").is_not_null())
        .with_columns(send_date=_local_date("sent_at", tz))
        .filter(pl.col("send_date").is_between(days.first, days.last))
    )
    # The same SerialNo in two files (an overlapping log rotation) is one message.
    ok = pl.col("serial_no").is_not_null() & (pl.col("serial_no") != "")
    sends = pl.concat([
        sends.filter(ok).sort("source_file", "source_row").unique(["sms_sdk_app_id", "serial_no"], keep="first",
                                                                  maintain_order=True),
        sends.filter(~ok),
    ])
    sends = _phones(con, sends)
    report.sends = sends.height

    day_serials = sends.filter(ok).select("sms_sdk_app_id", "serial_no", "send_date")
    with registered(con, "_day_serials", day_serials):
        receipts = con.execute("select r.*, d.send_date from raw.send_status r "
                               "join _day_serials d using (sms_sdk_app_id, serial_no)").pl()

    orphans = con.execute(sql_text("staging/orphan_receipts"),
                          {**days.instants(), **days.seconds(), "first_app": first_app}).pl()
    orphans = unix_seconds_to_utc(orphans, "user_receive_time", out="_t", flag="_f")
    first = (
        orphans.with_columns(_placed=pl.coalesce("_t", "pulled_at"))
        .group_by("sms_sdk_app_id", "serial_no")
        .agg(pl.col("_placed").min().alias("_first"))
        .with_columns(send_date=_local_date("_first", tz))
        .filter(pl.col("send_date").is_between(days.first, days.last))
        .select("sms_sdk_app_id", "serial_no", "send_date")
    )
    orphans = orphans.drop("_t", "_f").join(first, on=["sms_sdk_app_id", "serial_no"], how="inner")
    report.orphan_messages = first.height
    receipts = pl.concat([receipts, orphans], how="diagonal_relaxed")
    receipts = unix_seconds_to_utc(receipts, "user_receive_time", out="receive_at", flag="receive_time_flag")
    receipts = _phones(con, receipts)
    report.receipts = receipts.height
    report.messages = day_serials.height + first.height
    report.flagged_times = receipts.filter(pl.col("receive_time_flag").is_not_null()).height
    report.invalid_numbers = receipts.filter(~pl.col("phone_valid")).height

    with registered(con, "_all_serials", pl.concat([day_serials, first])):
        conversions = con.execute(
            "select c.serial_no, c.conversion_time, c.source_file, c.source_row, s.send_date, s.sms_sdk_app_id "
            "from raw.conversions c join _all_serials s using (serial_no)"
        ).pl()
    conversions = unix_seconds_to_utc(conversions, "conversion_time", out="converted_at", flag="conversion_time_flag")
    report.conversions = conversions.height

    staged = {}
    staged["staging.sends"] = sends.select(
        "send_date", "serial_no", "phone_number", "phone_e164", "country_code", "iso_code", "phone_valid", "sign_name",
        "template_id", "session_context", "sent_at", "fee", "code", "message", "sms_sdk_app_id", "source_file", "source_row",
    )
    staged["staging.receipts"] = receipts.select(
        "send_date", "serial_no", "record_key", "phone_number", "phone_e164", "country_code", "iso_code", "phone_valid",
        "report_status", "description", pl.col("receive_at").alias("user_receive_time"), "receive_time_flag",
        "session_context", "action", "pulled_at", "sms_sdk_app_id",
    )
    staged["staging.conversions"] = conversions.select(
        "send_date", "serial_no", pl.col("converted_at").alias("conversion_time"), "conversion_time_flag",
        "source_file", "source_row", "sms_sdk_app_id",
    )
    with transaction(con):
        for table, frame in staged.items():
            replace_slice(con, table, "send_date", days, frame)
    return report


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
