"""The warehouse on DuckLake: a catalog in Postgres, the data as Parquet files in a folder or
object storage, written by several processes at once.

SMSLEDGER_WAREHOUSE=`ducklake:postgres:dbname=... host=... port=... user=...` (libpq key=value
words) names the catalog, SMSLEDGER_LAKE_DATA_PATH the folder or s3:// URL of its files. The
password never travels in that string, which is logged and which DuckDB repeats in its errors: it
comes from PGPASSWORD, a password file (PGPASSFILE, ~/.pgpass) or a service file
(PGSERVICEFILE, `service=NAME`), which libpq inside the postgres extension reads by itself.

The extensions come from PyPI packages built for one DuckDB version each (duckdb-extension-ducklake,
duckdb-extension-postgres): nothing is downloaded. DuckDB's own INSTALL copies the file of the
package into its extension directory under the extension's canonical name (postgres ->
postgres_scanner), which LOAD then finds; a LOAD from the package's path fails for postgres,
whose file name is not its entry point's.

What DuckLake does differently from a DuckDB file (docs/ducklake.md has the evidence): no primary
keys, so no `insert or replace` / `on conflict` (use `merge into` or delete + insert); and a
transaction that inserts into a table fails at commit when another process committed a delete from
it meanwhile (and one that deletes, when another inserted), even on another day's slice: such a
unit of work is re-run whole by `retry_on_conflict`. Appends alone never conflict.
"""

from __future__ import annotations

import dataclasses
import importlib
import random
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import duckdb

from pipelines.warehouse.db import prepare_session

SCHEME = "ducklake:postgres:"
CATALOG = "lake"  # the name the lake is attached under; `use lake` makes raw.x, marts.y resolve
_EXTENSIONS = {"postgres": "duckdb_extension_postgres", "ducklake": "duckdb_extension_ducklake"}
_OBJECT_STORE_EXTENSION = {"httpfs": "duckdb_extension_httpfs"}  # only for an s3:// data path

T = TypeVar("T")


class LakeConfigError(ValueError):
    """A warehouse URI or data path that cannot work, as one line naming the variable."""


@dataclasses.dataclass(frozen=True)
class LakeLocation:
    """Where a lake is: the catalog's libpq connection words (never a password) and the data path
    (None: the one recorded in the catalog when it was created)."""

    conninfo: str
    data_path: str | None = None

    def __str__(self) -> str:
        return SCHEME + self.conninfo


def is_lake_uri(value: object) -> bool:
    return str(value).startswith("ducklake:")


# libpq's key=value syntax: a value is a bare word or a single-quoted string with \' and \\.
_WORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """The keys and values of libpq key=value connection words (values unquoted)."""
    words: dict[str, str] = {}
    position = 0
    while position < len(conninfo.rstrip()):
        match = _WORD.match(conninfo, position)
        if match is None:
            # Only the keys read so far are named: the unreadable rest may hold a secret.
            after = f"after {', '.join(words)} " if words else ""
            raise LakeConfigError(
                f"SMSLEDGER_WAREHOUSE: cannot read the connection words {after}(character {position + 1} after "
                f"{SCHEME!r}): expected key=value words, e.g. {SCHEME}dbname=smsledger host=db.internal port=5432 user=smsledger")
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        words[key] = value
        position = match.end()
    return words


def parse_lake_uri(uri: str, data_path: str | Path | None = None) -> LakeLocation:
    """A LakeLocation from SMSLEDGER_WAREHOUSE and SMSLEDGER_LAKE_DATA_PATH; one-line errors that
    never repeat a password."""
    if not uri.startswith(SCHEME):
        raise LakeConfigError(
            f"SMSLEDGER_WAREHOUSE: a lake is named {SCHEME}dbname=... host=... port=... user=... "
            f"(a catalog in Postgres), not {redact(uri)!r}")
    conninfo = uri[len(SCHEME):].strip()
    if conninfo.startswith(("postgres://", "postgresql://")):
        raise LakeConfigError(
            "SMSLEDGER_WAREHOUSE: give the catalog as libpq key=value words (dbname=... host=... user=...), not a URL")
    words = parse_conninfo(conninfo)
    if "password" in words:
        raise LakeConfigError(
            "SMSLEDGER_WAREHOUSE must not carry the password (it is logged and repeated in errors): "
            "set PGPASSWORD, or use a password file (PGPASSFILE) or a service file (PGSERVICEFILE with service=NAME)")
    if "dbname" not in words and "service" not in words:
        raise LakeConfigError("SMSLEDGER_WAREHOUSE: name the catalog's database with dbname=... (or a service=...)")
    return LakeLocation(conninfo, _data_path(data_path))


def _data_path(value: str | Path | None) -> str | None:
    """An absolute folder or an object-store URL, ending in '/' (DuckLake appends file names)."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        if not text.startswith(("s3://", "gs://", "gcs://", "r2://", "az://", "abfss://")):
            raise LakeConfigError(f"SMSLEDGER_LAKE_DATA_PATH: {text!r} is neither a folder nor an object-storage URL (s3://...)")
        return text.rstrip("/") + "/"
    return str(Path(text).expanduser().resolve()) + "/"


_SECRET = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with any password=... word or user:password@ of a URL masked: DuckDB repeats the
    whole connection string in its errors."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET.sub(r"\1***", text))


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_extensions(con: duckdb.DuckDBPyConnection, *, object_store: bool = False) -> None:
    """LOAD postgres and ducklake (and httpfs for object storage) from their PyPI packages
    (INSTALL from the package's file into DuckDB's extension directory first, a no-op once there).
    Each LOAD verifies the extension's signature (about 0.25 s each); nothing is downloaded,
    autoinstall being off."""
    con.execute("set autoinstall_known_extensions = false")
    version = duckdb.__version__
    wanted = {**_EXTENSIONS, **(_OBJECT_STORE_EXTENSION if object_store else {})}
    for name, module_name in wanted.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            raise LakeConfigError(
                f"the DuckDB extension {name} is not installed: pip install "
                f"'{module_name.replace('_', '-')}=={version}' (it must match duckdb {version})") from None
        binary = Path(module.__file__).parent / "extensions" / f"v{version}" / f"{name}.duckdb_extension"
        if not binary.exists():
            shipped = sorted(p.name for p in (Path(module.__file__).parent / "extensions").glob("v*"))
            raise LakeConfigError(
                f"{module_name.replace('_', '-')} ships the {name} extension for DuckDB {', '.join(shipped) or 'no version'}, "
                f"not for the installed duckdb {version}: install the matching versions of both")
        con.execute(f"install {_sql_string(str(binary))}")
        con.execute(f"load {name}")


def connect(location: LakeLocation, *, read_only: bool = False,
            object_store: Mapping[str, str | bool] | None = None) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached as `lake` and in use (so raw.x, staging.y, marts.z
    resolve to it), the session set up like a DuckDB file's (UTC, the macros of sql/ddl/macros.sql).

    `object_store`: for an s3:// data path, the options of a DuckDB S3 secret (key_id, secret,
    region, endpoint, url_style, use_ssl, session_token), kept in this session only.

    Read-only: the lake is attached READ_ONLY (its Postgres catalog too), then every other file,
    database and extension is locked away: only the data path stays readable. The data path itself
    stays writable by COPY: `smsledger sql` must run only reading statements (its own check)."""
    con = duckdb.connect()
    try:
        con.execute("set enable_progress_bar = false")  # DuckLake commits would draw one on stdout
        remote = location.data_path is not None and "://" in location.data_path
        load_extensions(con, object_store=remote or object_store is not None)
        if object_store is not None:
            _create_object_store_secret(con, object_store)
        options = ["read_only"] if read_only else []
        if location.data_path is not None and not read_only:
            # The catalog records the data path on creation and refuses another one later: readers
            # take the recorded one, so a reader's setting can never disagree with it.
            options.append(f"data_path {_sql_string(location.data_path)}")
        attach = f"attach {_sql_string(str(location))} as {CATALOG}"
        if options:
            attach += f" ({', '.join(options)})"
        try:
            con.execute(attach)
        except duckdb.Error as exc:
            raise LakeConfigError(f"cannot open the lake {location}: {_one_line(exc)}") from None
        con.execute(f"use {CATALOG}")
        prepare_session(con)
        if read_only:
            _lock_down(con)
    except BaseException:
        con.close()
        raise
    return con


_SECRET_OPTIONS = {"key_id", "secret", "region", "endpoint", "url_style", "use_ssl", "session_token"}


def _create_object_store_secret(con: duckdb.DuckDBPyConnection, options: Mapping[str, str | bool]) -> None:
    unknown = set(options) - _SECRET_OPTIONS
    if unknown:
        raise LakeConfigError(f"unknown object-store options {sorted(unknown)}: expected some of {sorted(_SECRET_OPTIONS)}")
    words = ", ".join(f"{key} {str(value).lower() if isinstance(value, bool) else _sql_string(str(value))}"
                      for key, value in options.items())
    try:
        con.execute(f"create or replace temporary secret smsledger_lake_store (type s3, {words})")
    except duckdb.Error as exc:
        # DuckDB's message would repeat the statement, secret included: only its kind is told.
        raise LakeConfigError(f"the object-store options were refused by DuckDB ({type(exc).__name__})") from None


def data_path_of(con: duckdb.DuckDBPyConnection) -> str:
    """The data path recorded in the attached lake's catalog."""
    (path,) = con.execute(f"select value from {CATALOG}.options() where option_name = 'data_path'").fetchone()
    return path


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Reading the lake needs DuckDB's external access (the Postgres catalog, the Parquet files);
    once attached, every other file, ATTACH, COPY TO and extension load is refused, and the
    settings are locked so a query cannot turn them back on."""
    con.execute(f"set allowed_directories = [{_sql_string(data_path_of(con))}]")  # a folder or an s3:// prefix
    con.execute("set enable_external_access = false")
    con.execute("set autoload_known_extensions = false")
    con.execute("set lock_configuration = true")


def _one_line(exc: BaseException) -> str:
    return redact(" ".join(str(exc).split()))


def is_commit_conflict(exc: BaseException) -> bool:
    """A DuckLake commit lost to another process's commit: the whole unit of work may be re-run.
    Raised at COMMIT as duckdb.TransactionException "... Transaction conflict - attempting to
    insert into table with index "N" - but another transaction has deleted from it" (or "deleted
    inlined data from it", or "attempting to delete from table ... has inserted into it"), or
    "Exceeded the maximum retry count" when DuckLake's own retry of a snapshot-id race
    (ducklake_max_retry_count, 10 by default) gave up."""
    if not isinstance(exc, duckdb.TransactionException):
        return False
    text = str(exc)
    return "Failed to commit DuckLake transaction" in text and (
        "Transaction conflict" in text or "Exceeded the maximum retry count" in text)


def retry_on_conflict(
    work: Callable[[], T],
    *,
    attempts: int = 8,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Run `work` (a whole transaction: its reads too, since what it read may have changed) until
    it commits without a conflict, at most `attempts` times, waiting a jittered, doubling delay
    between tries so that writers that collided do not collide again. Other errors, and the last
    conflict, are raised as they are."""
    delay = first_delay
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except duckdb.TransactionException as exc:
            if not is_commit_conflict(exc) or attempt == attempts:
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, max_delay)
    raise AssertionError("unreachable")
