"""Marts from staging, by SQL files in sql/: each build rewrites its days' slice in one
transaction.

Phone numbers (pipelines/normalize/pii.py). Without SMSLEDGER_PII_KEY, marts.message_status and
marts.replies hold a number as `phone_e164`, as staging does. With the key they hold `phone_token`
and `phone_masked` instead, and no column that carries the number: a reply's `record_key` (which
holds its number in raw and staging) is replaced by its token, and a reply finds its message by
token. The column set follows the setting, so a query that names a column the mode does not have
fails instead of reading nulls. A warehouse whose two marts are empty takes either mode (the
columns are switched at their first build); one whose marts hold rows of the other mode, or tokens
of another key, is refused in one line naming SMSLEDGER_PII_KEY (`PhoneModeError`): numbers cannot
come back from tokens, tokens of two keys never match, and emptying the marts behind a person's
back would lose the days no run rebuilds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import duckdb
import polars as pl

from pipelines.config import DEMO_SDK_APP_ID, ConfigError
from pipelines.days import DayRange
from pipelines.normalize.pii import key_id, phone_token, with_tokens
from pipelines.warehouse import lake
from pipelines.warehouse.db import insert_frame, sql_text, transaction


class Mart(NamedTuple):
    """The SQL file that inserts a slice of a mart, and the column that places a row in a slice:
    a DATE of the partition zone (daily marts), or a UTC instant (hourly marts), which is compared
    with the days' UTC bounds so that the process or session time zone never shifts the slice.
    A mart with numbers names the staging tables (and their day column) its numbers come from."""

    column: str
    sql_file: str
    hourly: bool = False
    defaults: dict[str, object] = {}  # parameters of the SQL file a caller may leave out
    numbers_from: tuple[tuple[str, str], ...] = ()


MARTS = {
    "marts.message_status": Mart("send_date", "marts/message_status",
                                 numbers_from=(("staging.sends", "send_date"), ("staging.receipts", "send_date"))),
    "marts.replies": Mart("reply_date", "marts/replies", numbers_from=(("staging.replies", "reply_date"),)),
    "marts.delivery_daily": Mart("day", "marts/delivery_daily"),
    "marts.conversion_daily": Mart("day", "marts/conversion_daily"),
    "marts.failure_reasons_daily": Mart("day", "marts/failure_reasons_daily"),
    "marts.spend_daily": Mart("day", "marts/spend_daily"),
    "marts.provider_statistics_hourly": Mart("hour", "marts/provider_statistics_hourly", hourly=True),
    "marts.reconciliation_daily": Mart("day", "marts/reconciliation_daily", defaults={"first_app": DEMO_SDK_APP_ID}),
}
PHONE_MARTS = tuple(table for table, mart in MARTS.items() if mart.numbers_from)
NUMBER_COLUMNS = ("phone_e164",)
TOKEN_COLUMNS = ("phone_token", "phone_masked")
# Tokens are computed and inserted this many numbers at a time, so a day of new numbers is never
# held in memory at once.
TOKEN_CHUNK = 100_000


class PhoneModeError(ConfigError):
    """SMSLEDGER_PII_KEY does not fit the marts the warehouse holds; one line naming the variable."""


@lake.retry_conflicts
def rebuild(con: duckdb.DuckDBPyConnection, table: str, days: DayRange, *, pii_key: str | None = None,
            **params: object) -> int:
    """Replace the days' rows of a mart; returns the rows written. The SQL file gets the slice's
    bounds ($first_day/$last_day, or $start/$end for an hourly mart) and `params`; a mart with
    numbers holds tokens instead when `pii_key` is given."""
    mart = MARTS[table]
    if mart.hourly:
        bounds: dict[str, object] = days.instants()
        where = f"{mart.column} >= $start and {mart.column} < $end"
    else:
        bounds = days.dates()
        where = f"{mart.column} between $first_day and $last_day"
    sql = sql_text(mart.sql_file)
    with transaction(con):
        if mart.numbers_from:
            key = pii_key.encode("utf-8") if pii_key else None
            phone_mode(con, key)
            sql = for_mode(sql, tokens=key is not None)
            if key is not None:
                params["key_id"] = key_id(key)
                _add_tokens(con, key, mart, bounds)
                if table == "marts.replies":
                    _reply_keys(con, key, bounds)
        con.execute(f"delete from {table} where {where}", bounds)
        con.execute(sql, {**mart.defaults, **bounds, **params})
        (rows,) = con.execute(f"select count(*) from {table} where {where}", bounds).fetchone()
        con.execute("drop table if exists _reply_keys")
    return rows


def for_mode(sql: str, *, tokens: bool) -> str:
    """The SQL of a mart with numbers for one mode: lines tagged `-- tokens` only with a key,
    `-- numbers` only without."""
    other = "-- numbers" if tokens else "-- tokens"
    return "\n".join(line for line in sql.splitlines() if not line.rstrip().endswith(other))


def phone_mode(con: duckdb.DuckDBPyConnection, key: bytes | None) -> None:
    """Make sure the marts with numbers hold what `key` asks for (numbers without, tokens of this
    key with): empty marts are switched; marts with rows of the other mode, or of another key,
    raise PhoneModeError. Inside the caller's transaction."""
    wanted = key_id(key) if key is not None else None
    holds_tokens = all(_has_column(con, table, TOKEN_COLUMNS[0]) for table in PHONE_MARTS)
    made_with = con.execute("select max(key_id) from marts.phone_token_key").fetchone()[0]
    if holds_tokens == (wanted is not None) and made_with == wanted:
        return
    if any(con.execute(f"select exists (select 1 from {table})").fetchone()[0] for table in PHONE_MARTS):
        empty_them = ("or empty marts.message_status and marts.replies (delete from ...) and backfill them "
                      "(numbers purged from raw meanwhile do not come back)")
        if wanted is None:
            raise PhoneModeError("SMSLEDGER_PII_KEY is unset, but this warehouse's marts hold tokens of a key instead "
                                 f"of phone numbers: set it to that key, {empty_them}")
        if not holds_tokens:
            raise PhoneModeError("SMSLEDGER_PII_KEY is set, but this warehouse's marts hold phone numbers (built "
                                 f"without a key): unset it, {empty_them}")
        raise PhoneModeError("SMSLEDGER_PII_KEY is not the key this warehouse's marts were built with (tokens of "
                             f"two keys never match): set it back, {empty_them}")
    _switch(con, wanted)


def _switch(con: duckdb.DuckDBPyConnection, wanted: str | None) -> None:
    """Give the (empty) marts with numbers the columns of the mode, and record the key."""
    adding, dropping = (TOKEN_COLUMNS, NUMBER_COLUMNS) if wanted else (NUMBER_COLUMNS, TOKEN_COLUMNS)
    for table in PHONE_MARTS:
        for column in adding:
            if not _has_column(con, table, column):
                con.execute(f"alter table {table} add column {column} varchar")
        for column in dropping:
            if _has_column(con, table, column):
                con.execute(f"alter table {table} drop column {column}")
    con.execute("delete from marts.phone_token_key")
    if wanted:
        con.execute("insert into marts.phone_token_key (key_id, since) values ($id, current_timestamp)", {"id": wanted})
        # tokens of another key are of no use any more
        con.execute("delete from staging.phone_tokens where key_id <> $id", {"id": wanted})


def _has_column(con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
    schema, _, name = table.partition(".")
    return con.execute(
        "select count(*) from duckdb_columns() where database_name = current_database() and schema_name = $schema "
        "and table_name = $table and column_name = $column", {"schema": schema, "table": name, "column": column},
    ).fetchone()[0] > 0


def _add_tokens(con: duckdb.DuckDBPyConnection, key: bytes, mart: Mart, bounds: dict[str, object]) -> int:
    """staging.phone_tokens gets the numbers of the mart's days it does not hold for this key yet
    (each distinct number once); returns how many."""
    identity = key_id(key)
    numbers = " union all ".join(f"select phone_e164, country_code from {table} "
                                 f"where {column} between $first_day and $last_day"
                                 for table, column in mart.numbers_from)
    new_numbers = (f"select phone_e164, any_value(country_code) as country_code from ({numbers}) n "
                   "where phone_e164 is not null "
                   "and phone_e164 not in (select phone_e164 from staging.phone_tokens where key_id = $key_id) "
                   "group by phone_e164")
    return _in_chunks(con, new_numbers, {**bounds, "key_id": identity}, "staging.phone_tokens",
                      lambda chunk: with_tokens(chunk, key).select("phone_e164", "phone_token", "phone_masked")
                      .with_columns(key_id=pl.lit(identity)))


def _reply_keys(con: duckdb.DuckDBPyConnection, key: bytes, bounds: dict[str, object]) -> None:
    """_reply_keys: each reply of the days' record key (which holds its number) and its token, the
    mart's key for it."""
    con.execute("create or replace temp table _reply_keys (sms_sdk_app_id varchar, record_key varchar, mart_key varchar)")
    _in_chunks(con, "select distinct sms_sdk_app_id, record_key from staging.replies "
                    "where reply_date between $first_day and $last_day", bounds, "_reply_keys",
               lambda chunk: chunk.with_columns(
                   mart_key=pl.Series([phone_token(key, text) for text in chunk["record_key"]], dtype=pl.Utf8)))


def _in_chunks(con: duckdb.DuckDBPyConnection, query: str, params: dict[str, object], target: str,
               compute: Callable[[pl.DataFrame], pl.DataFrame]) -> int:
    """Insert `compute` of the rows of `query` into `target`, TOKEN_CHUNK rows at a time (the rows
    are numbered in a temporary table first: rowids inside a transaction are not 0, 1, ...).
    Returns the rows inserted."""
    con.execute(f"create or replace temp table _chunked as select *, row_number() over () as _row from ({query})", params)
    try:
        (total,) = con.execute("select count(*) from _chunked").fetchone()
        for start in range(0, total, TOKEN_CHUNK):
            chunk = con.execute("select * exclude (_row) from _chunked where _row > $start and _row <= $end",
                                {"start": start, "end": start + TOKEN_CHUNK}).pl()
            insert_frame(con, target, compute(chunk))
    finally:
        con.execute("drop table if exists _chunked")
    return total
