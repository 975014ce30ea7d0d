"""Raw records of a range of days, normalized (E.164, UTC), into the staging tables.

A message belongs to the day it was sent (from the sends log) or, when the log does not know it,
to the day of its first receipt; a reply to the day it was sent. Each call rewrites exactly the
slice of its days, in one transaction, so materializing a partition twice gives the same rows.

The rows stay in DuckDB, so memory is bounded by DuckDB's limit and a batch, not by the size of a
day (benchmarks/REPORT.md: 0.8 GiB for a day of 1M receipts, 1.1 GiB for 10M): the window's raw rows
are copied once into temp tables (DuckDB's, spilled to its temp directory when large); polars
converts each distinct time (pipelines/normalize/timestamps.py) and normalizes each number not
seen before (pipelines/normalize/phones.py, kept in staging.phone_numbers), a batch at a time;
SQL (sql/staging/) joins them back and places each row on its local day.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator

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

# Distinct times or numbers handed to polars at a time (a day of millisecond times can hold as
# many distinct times as messages).
NORMALIZE_BATCH = 100_000
# DuckDB's memory while days are staged: beyond it the temp tables, joins and inserts spill to
# DuckDB's temp directory.
DUCKDB_MEMORY_LIMIT = "512MB"
_NORMALIZER = f"phonenumbers {phonenumbers.__version__}"
# The temp tables of one call, dropped whatever happens.
_WINDOW_TABLES = ("_stage_sends", "_stage_orphans", "_stage_receipts", "_stage_conversions", "_stage_orphan_days",
                  "_stage_replies", "_stage_raw_times", "_stage_times", "_phone_keys", "_phone_missing", "_stage_phones",
                  "_new_sends", "_new_receipts", "_new_conversions", "_new_replies")


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


@lake.retry_conflicts
def build_messages(con: duckdb.DuckDBPyConnection, days: DayRange, first_app: str = DEMO_SDK_APP_ID) -> StagingReport:
    """Rewrite staging.sends, staging.receipts and staging.conversions for the days. A message is
    (sms_sdk_app_id, serial_no); a sends-log row that does not say its application is `first_app`'s."""
    report = StagingReport()
    params = {**days.dates(), "tz": str(days.tz)}
    with _window(con):
        con.execute("create temp table _stage_sends as " + sql_text("staging/sends_for_days"),
                    {**days.seconds(), "now_s": int(time.time()), "first_app": first_app})
        con.execute("create temp table _stage_orphans as " + sql_text("staging/orphan_receipts"),
                    {**days.instants(), **days.seconds(), "first_app": first_app})
        con.execute(sql_text("staging/window_messages"))
        _normalize(con, days)
        for name in ("orphan_days", "new_sends", "new_receipts", "new_conversions"):
            _run(con, f"staging/{name}", params)
        (report.unusable_send_times, report.orphan_messages, report.messages, report.flagged_times,
         report.invalid_numbers) = con.execute(sql_text("staging/messages_report")).fetchone()
        report.sends = _replace_slice(con, "staging.sends", "send_date", days)
        report.receipts = _replace_slice(con, "staging.receipts", "send_date", days)
        report.conversions = _replace_slice(con, "staging.conversions", "send_date", days)
    return report


@lake.retry_conflicts
def build_replies(con: duckdb.DuckDBPyConnection, days: DayRange) -> StagingReport:
    """Rewrite staging.replies for the days."""
    report = StagingReport()
    params = {**days.dates(), "tz": str(days.tz), "unsaid": callbacks.UNSAID_APPLICATION}
    with _window(con):
        con.execute("create temp table _stage_replies as " + sql_text("staging/replies_for_days"), days.seconds())
        con.execute(sql_text("staging/window_replies"))
        _normalize(con, days)
        _run(con, "staging/new_replies", params)
        report.flagged_times = con.execute("select count(reply_time_flag) from _new_replies").fetchone()[0]
        report.replies = _replace_slice(con, "staging.replies", "reply_date", days)
    return report


@contextlib.contextmanager
def _window(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction under DuckDB's staging memory limit, and the call's temp tables dropped after
    it whatever happens. The new rows are made in temp tables before the old ones are deleted: a
    10M-message day's rows made by joins after the delete ran out of DuckDB's memory."""
    # no checkpoint after each call: it cost more than the staging of a small day (DuckDB
    # checkpoints by itself once the write-ahead log passes its threshold)
    with memory_limited(con, DUCKDB_MEMORY_LIMIT, checkpoint=False):
        # staging tables keep no row order, and keeping it holds more in memory
        con.execute("set preserve_insertion_order = false")
        try:
            with transaction(con):
                yield
        finally:
            for name in _WINDOW_TABLES:
                con.execute(f"drop table if exists temp.{name}")
            con.execute("reset preserve_insertion_order")


def _replace_slice(con: duckdb.DuckDBPyConnection, table: str, date_column: str, days: DayRange) -> int:
    """Delete the days' rows of `table` and insert those of temp `_new_<name>` (by column name);
    the rows inserted."""
    new = "_new_" + table.split(".")[1]
    columns = ", ".join(d[0] for d in con.execute(f"select * from {new} limit 0").description)
    con.execute(f"delete from {table} where {date_column} between $first_day and $last_day", days.dates())
    return con.execute(f"insert into {table} ({columns}) select {columns} from {new}").fetchone()[0]


def _run(con: duckdb.DuckDBPyConnection, name: str, params: dict) -> int:
    """Run sql/NAME.sql with those of `params` it names; the rows it wrote."""
    sql = sql_text(name)
    return con.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).fetchone()[0]


def _normalize(con: duckdb.DuckDBPyConnection, days: DayRange) -> None:
    """_stage_times (t_raw, t_utc, flag, t_day: its date in the days' time zone) for each time of
    _stage_raw_times, and _stage_phones for each number of _phone_keys (those staging.phone_numbers
    lacks normalized first, and kept). A time's day is computed once per distinct time, not per row."""
    con.execute("create temp table _stage_times (t_raw bigint, t_utc timestamptz, flag varchar, t_day date)")
    for raw in _batches(con, "_stage_raw_times", "t_raw"):
        converted = unix_seconds_to_utc(raw, "t_raw", out="t_utc", flag="flag")
        insert_frame(con, "_stage_times", converted.with_columns(
            t_day=pl.col("t_utc").dt.convert_time_zone(str(days.tz)).dt.date()))
    params = {"normalizer": _NORMALIZER}
    con.execute("create temp table _phone_missing as " + sql_text("staging/phone_numbers_missing"), params)
    for missing in _batches(con, "_phone_missing", "phone_number, country_code_in, subscriber_number"):
        normalized = normalize_phones(missing, "phone_number", "country_code_in", subscriber_number="subscriber_number")
        with registered(con, "_phone_new", normalized):
            con.execute(sql_text("staging/phone_numbers_add"), params)
    con.execute("create temp table _stage_phones as " + sql_text("staging/phone_numbers_of"), params)


def _batches(con: duckdb.DuckDBPyConnection, table: str, columns: str) -> Iterator[pl.DataFrame]:
    """The rows of `table` as polars frames of about NORMALIZE_BATCH rows at most, split by a hash
    of `columns` (each batch its own query: no result stays open while the batch is written)."""
    rows = con.execute(f"select count(*) from {table}").fetchone()[0]
    parts = -(-rows // NORMALIZE_BATCH)
    for part in range(parts):
        yield con.execute(f"select {columns} from {table} where hash({columns}) % {parts} = {part}").pl()
