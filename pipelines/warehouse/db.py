"""DuckDB access: the SQL files of sql/, connections to the warehouse (a DuckDB file or a DuckLake),
transactions, inserts and upserts of frames.

A DuckDB file lets one process write it at a time, and a read-only connection from another
process is refused while a writer has it open. Writers therefore hold the file only for short
transactions, and every connection retries briefly on a lock conflict instead of failing.

A lake (pipelines/warehouse/lake.py) takes writers in parallel and readers at any time; what its
writers must do instead is re-run a unit of work whose commit lost to another's
(`lake.retry_conflicts`). Every statement here works on both.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import polars as pl

from pipelines.config import DEMO_SDK_APP_ID, LakeLocation, Warehouse, is_lake, parse_lake_uri
from pipelines.normalize.timestamps import MILLISECONDS_FROM
from pipelines.warehouse import lake


class WarehouseBusyError(RuntimeError):
    """Another process held the warehouse file for longer than we were willing to wait."""


@functools.cache
def sql_text(name: str) -> str:
    """The text of sql/NAME.sql."""
    return importlib.resources.files("pipelines.sql").joinpath(f"{name}.sql").read_text(encoding="utf-8")


@functools.cache
def _macros() -> str:
    return sql_text("ddl/macros").replace("{milliseconds_from}", str(int(MILLISECONDS_FROM)))


def _is_lock_conflict(exc: Exception) -> bool:
    text = str(exc)
    return "lock" in text.lower() and ("Conflicting" in text or "Could not set lock" in text)


def connect(warehouse: Warehouse | str, *, read_only: bool = False, wait_seconds: float = 60.0,
            on_wait: Callable[[], None] | None = None) -> duckdb.DuckDBPyConnection:
    """A connection to the warehouse, a DuckDB file or a lake (a LakeLocation, or its URI), with
    the session's time zone and macros. For a file, `on_wait` is called once if another process
    has held it for a second, so a person knows what the wait is for; a lake never makes one wait.

    A read-only connection reads the warehouse and nothing else (see `_lock_for_reading`)."""
    if is_lake(warehouse):
        location = warehouse if isinstance(warehouse, LakeLocation) else parse_lake_uri(str(warehouse))
        con = duckdb.connect()
        try:
            lake.attach(con, location, read_only=read_only)
            prepare_session(con)
            if read_only:
                _lock_for_reading(con, readable=[lake.data_path_of(con)])  # a folder or an s3:// prefix
        except BaseException:
            con.close()
            raise
        return con
    path = Path(warehouse)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    deadline = started + wait_seconds
    delay = 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc) or time.monotonic() >= deadline:
                if _is_lock_conflict(exc):
                    raise WarehouseBusyError(
                        f"{path} is held by another process (a sync?) for more than {wait_seconds:.0f}s; try again"
                    ) from None
                raise
            if on_wait is not None and time.monotonic() - started >= 1.0:
                on_wait()
                on_wait = None
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    prepare_session(con)
    if read_only:
        _lock_for_reading(con)
    return con


def prepare_session(con: duckdb.DuckDBPyConnection) -> None:
    """What every warehouse connection sets, a DuckDB file's or a lake's (pipelines/warehouse/lake.py)."""
    con.execute("set time zone 'UTC'")
    con.execute(_macros())


def _lock_for_reading(con: duckdb.DuckDBPyConnection, *, readable: list[str] | tuple[str, ...] = ()) -> None:
    """Make a read-only connection read its own database file (or attached lake) and nothing else,
    whatever SQL it is given later (`smsledger sql` runs a person's query on it).

    Read-only already refuses writes to this file; without external access DuckDB also refuses
    every other file and URL: COPY TO, ATTACH, EXPORT/IMPORT DATABASE, read_csv/read_text/glob,
    installing or loading extensions. Extensions are never installed or loaded behind the query's
    back (the ones built into the wheel, icu and json among them, still work), and the locked
    configuration cannot be set back. Runs after the time zone and the temporary macros, which
    stay usable. A lake is attached before this (reading it needs external access: the Postgres
    catalog, the Parquet files), and its data path is given as `readable`: the one folder or
    prefix left open. That leaves the data path writable by COPY too, so `smsledger sql` also runs
    reading statements only (pipelines/app/query.py).

    DuckDB's progress bar is off: it writes to standard output, into the rows being printed."""
    con.execute("set enable_progress_bar = false")
    if readable:
        con.execute(f"set allowed_directories = [{', '.join(_sql_string(path) for path in readable)}]")
    con.execute("set autoinstall_known_extensions = false")
    con.execute("set autoload_known_extensions = false")
    con.execute("set enable_external_access = false")
    con.execute("set lock_configuration = true")


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@contextlib.contextmanager
def open_warehouse(warehouse: Warehouse | str, *, read_only: bool = False, wait_seconds: float = 60.0,
                   sdk_app_id: str = DEMO_SDK_APP_ID) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection to the warehouse (a DuckDB file or a lake), its schema brought up to date unless
    read-only; `sdk_app_id` is the application rows of a warehouse made before applications were
    told apart belong to."""
    con = connect(warehouse, read_only=read_only, wait_seconds=wait_seconds)
    try:
        if not read_only:
            ensure_schema(con, sdk_app_id)
        yield con
    finally:
        con.close()


# The warehouse's DDL, in order (each file idempotent): a new warehouse is made by running them.
SCHEMA_FILES = ("ddl/raw", "ddl/raw_applications", "ddl/prices", "ddl/staging", "ddl/marts")

# Tables that name their application, and how an older table gets the column: an `alter table`
# for those without a `current_timestamp` default (new warehouses: sql/ddl/raw_applications.sql),
# a rebuild for the others (see `_rebuild`) and for raw.statistics_hourly, whose key was the hour
# alone.
_ALTERED_FOR_APPLICATIONS = ("send_status", "reply_status")
_REBUILT_FOR_APPLICATIONS = ("batches", "gap_fill_searches", "statistics_hourly")
APP_COLUMN = "sms_sdk_app_id"
# Staging and mart tables that name their application since they are grouped by it: an older
# table gets the column by `alter table` (none of them has a `current_timestamp` default, which
# DuckDB could not replay after a kill), its rows the first application.
_ALTERED_LATER_FOR_APPLICATIONS = (
    "staging.receipts", "staging.replies", "staging.conversions", "marts.message_status", "marts.replies",
    "marts.delivery_daily", "marts.conversion_daily", "marts.failure_reasons_daily",
    "marts.provider_statistics_hourly", "marts.reconciliation_daily",
)
# Columns added to older mart tables since: null in the rows built before (the lookback rebuilds
# recent days; an older day gets them when it is rebuilt).
_ADDED_COLUMNS = {
    "marts.message_status": (("cost", "decimal(18, 6)"), ("currency", "varchar")),
    "marts.delivery_daily": (("cost", "decimal(18, 6)"), ("currency", "varchar")),
}


@lake.retry_conflicts  # two processes opening a new lake at once both create its tables
def ensure_schema(con: duckdb.DuckDBPyConnection, sdk_app_id: str = DEMO_SDK_APP_ID) -> None:
    for name in _REBUILT_FOR_APPLICATIONS:
        if _lacks_column(con, "raw", name, APP_COLUMN) or (name == "batches" and _lacks_column(con, "raw", name, "pull_limit")):
            _rebuild(con, f"raw.{name}", sdk_app_id)
    altered = [f"raw.{name}" for name in _ALTERED_FOR_APPLICATIONS if _lacks_column(con, "raw", name, APP_COLUMN)]
    altered += [table for table in _ALTERED_LATER_FOR_APPLICATIONS if _lacks_column(con, *table.split("."), APP_COLUMN)]
    with transaction(con):
        for table in altered:
            # Rows loaded before belong to the one application there was. A column added with a
            # default gets it without rewriting the table (an update of 10M receipts held twice the
            # memory); the default is then dropped, so a row must say its application.
            if not sdk_app_id.isdigit():
                raise ValueError(f"{sdk_app_id!r} is not an SmsSdkAppId")
            con.execute(f"alter table {table} add column {APP_COLUMN} varchar default '{sdk_app_id}'")
            con.execute(f"alter table {table} alter column {APP_COLUMN} drop default")
        for table, columns in _ADDED_COLUMNS.items():
            for column, column_type in columns:
                if _lacks_column(con, *table.split("."), column):
                    con.execute(f"alter table {table} add column {column} {column_type}")
        for name in SCHEMA_FILES:
            con.execute(_ddl(name, con))


def _ddl(name: str, con: duckdb.DuckDBPyConnection) -> str:
    """sql/NAME.sql for this warehouse: a lake's tables have no primary keys (DuckLake refuses
    them); a DuckDB file keeps them, as a check that the writers keep their keys unique."""
    text = sql_text(name)
    return _PRIMARY_KEY.sub("", text) if lake.is_lake_connection(con) else text


_PRIMARY_KEY = re.compile(r"\s+primary key\b", re.IGNORECASE)


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> list[str]:
    return [name for (name,) in con.execute(
        "select column_name from duckdb_columns() where database_name = current_database() "
        "and schema_name = $schema and table_name = $table order by column_index",
        {"schema": schema, "table": table}).fetchall()]


def _lacks_column(con: duckdb.DuckDBPyConnection, schema: str, table: str, column: str) -> bool:
    """Whether the table exists without the column (a warehouse made by an older version)."""
    names = _columns(con, schema, table)
    return bool(names) and column not in names


def _rebuild(con: duckdb.DuckDBPyConnection, table: str, sdk_app_id: str) -> None:
    """Give an older table the columns sql/ddl/raw.sql now declares, keeping its rows (and giving
    them `sdk_app_id` if the table did not name applications), in one transaction. Not `alter
    table ... add column`: DuckDB (1.5) cannot replay that from its write-ahead log for a table
    with a `current_timestamp` default, so a kill before the next checkpoint would leave the file
    unopenable; nor can it drop a primary key."""
    schema, _, name = table.partition(".")
    before = f"{name}_before_upgrade"
    with transaction(con):
        con.execute(f"alter table {table} rename to {before}")
        con.execute(_ddl("ddl/raw", con))
        kept = ", ".join(_columns(con, schema, before))
        if APP_COLUMN in kept.split(", "):
            con.execute(f"insert into {table} ({kept}) select {kept} from {schema}.{before}")
        else:
            con.execute(f"insert into {table} ({kept}, {APP_COLUMN}) select {kept}, $app from {schema}.{before}",
                        {"app": sdk_app_id})
        con.execute(f"drop table {schema}.{before}")


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> Iterator[str]:
    """`frame` visible to SQL as `name` for the block, and unregistered whatever happens."""
    con.register(name, frame)
    try:
        yield name
    finally:
        con.unregister(name)


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> int:
    """Insert the rows of `frame` into `table`, matching columns by name (a column order that
    differs never puts values in the wrong column). Returns the rows inserted."""
    if frame.is_empty():
        return 0
    names = ", ".join(frame.columns)
    with registered(con, "_insert_frame", frame):
        con.execute(f"insert into {table} ({names}) select {names} from _insert_frame")
    return frame.height


def upsert_frame(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame, key: list[str] | tuple[str, ...]) -> int:
    """Rows of `frame` into `table` by their `key` columns: a row whose key the table holds has the
    frame's columns replaced, the others are inserted. The warehouse keeps keys unique by writing
    through here, not by a primary key, which a lake does not have (so neither `insert or replace`
    nor `on conflict`): a MERGE works on both. `frame` holds each key once. Returns its rows."""
    if frame.is_empty():
        return 0
    names = frame.columns
    on = " and ".join(f"t.{column} = s.{column}" for column in key)
    update = ", ".join(f"{column} = s.{column}" for column in names if column not in key)
    with registered(con, "_upsert_frame", frame):
        con.execute(
            f"merge into {table} t using _upsert_frame s on ({on}) "
            + (f"when matched then update set {update} " if update else "")
            + f"when not matched then insert ({', '.join(names)}) values ({', '.join(f's.{c}' for c in names)})")
    return frame.height


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


@functools.cache
def _default_memory_limit() -> str:
    """DuckDB's own limit on this machine, as it shows it (asked once per process)."""
    with duckdb.connect() as fresh:
        return fresh.execute("select current_setting('memory_limit')").fetchone()[0]


@contextlib.contextmanager
def memory_limited(con: duckdb.DuckDBPyConnection, limit: str, *, checkpoint: bool = True) -> Iterator[None]:
    """DuckDB's memory `limit` for the block, and (with `checkpoint`) a checkpoint of what was
    written within it, under that limit, when the warehouse has DuckDB's default limit (80% of the
    machine: its cache of the tables alone grows past the whole budget of a big load or day); a
    limit that someone set is left alone.
    Beyond the limit DuckDB spills to its temp directory. (The default is put back with RESET:
    DuckDB shows limits rounded, and setting what it shows lowers the limit a little each time.)"""
    current = con.execute("select current_setting('memory_limit')").fetchone()[0]
    if current != _default_memory_limit():
        yield
        return
    con.execute(f"set memory_limit = '{limit}'")
    try:
        yield
        if checkpoint and not lake.is_lake_connection(con):  # a lake's CHECKPOINT compacts files: its maintenance's job
            con.execute("checkpoint")
    finally:
        con.execute("reset memory_limit")
