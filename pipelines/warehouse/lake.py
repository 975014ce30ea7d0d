"""The warehouse on DuckLake: a catalog in Postgres, the data as Parquet files in a folder or
object storage, written by several processes at once.

SMSLEDGER_WAREHOUSE=`ducklake:postgres:dbname=... host=... port=... user=...` (libpq key=value
words) names the catalog, SMSLEDGER_LAKE_DATA_PATH the folder or s3:// URL of its files; both are
read by pipelines/config.py (`LakeLocation`). The password never travels in that string, which is
logged and which DuckDB repeats in its errors: it comes from PGPASSWORD, a password file
(PGPASSFILE, ~/.pgpass) or a service file (PGSERVICEFILE, `service=NAME`), which libpq inside the
postgres extension reads by itself. Connections are pipelines/warehouse/db.py's `connect`, which
calls `attach` here for a lake.

The extensions come from PyPI packages built for one DuckDB version each (duckdb-extension-ducklake,
duckdb-extension-postgres): nothing is downloaded. DuckDB's own INSTALL copies the file of the
package into its extension directory under the extension's canonical name (postgres ->
postgres_scanner), which LOAD then finds; a LOAD from the package's path fails for postgres,
whose file name is not its entry point's.

What DuckLake does differently from a DuckDB file (docs/ducklake.md has the evidence): no primary
keys, so no `insert or replace` / `on conflict` (db.py's `upsert_frame` merges instead); and a
transaction that inserts into a table fails at commit when another process committed a delete from
it meanwhile (and one that deletes, when another inserted), even on another day's slice: such a
unit of work is re-run whole (`retry_conflicts`). Appends alone never conflict.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
import pwd
import random
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

import duckdb

from pipelines.config import LakeConfigError, LakeLocation, redact

CATALOG = "lake"  # the name the lake is attached under; `use lake` makes raw.x, marts.y resolve
_EXTENSIONS = {"postgres": "duckdb_extension_postgres", "ducklake": "duckdb_extension_ducklake"}
_OBJECT_STORE_EXTENSION = {"httpfs": "duckdb_extension_httpfs"}  # only for an s3:// data path
# A conflict re-runs the whole unit of work: 8 tries, waiting 0.05 s doubling up to 2 s (about 5 s
# of waits in all) with jitter, so writers that collided do not collide again in step.
CONFLICT_ATTEMPTS = 8

log = logging.getLogger(__name__)

T = TypeVar("T")


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


def duckdb_home() -> str | None:
    """The folder DuckDB is to take for its home when HOME does not name one (None: HOME does).

    DuckDB installs extensions under its home (`<home>/.duckdb/extensions`), and INSTALL and LOAD
    both fail without one ("Can't find the home directory at ''"), even with `extension_directory`
    set. A service without HOME (a systemd system service, some containers) gets the home of its
    user's passwd entry, as Python's expanduser does; where that is no writable folder either, a
    folder of this user alone in the temporary directory. Extensions are verified by signature at
    each LOAD, so a copy in either place cannot be swapped for another."""
    home = os.environ.get("HOME", "")
    if home and os.path.isdir(home):
        return None
    try:
        account_home = pwd.getpwuid(os.getuid()).pw_dir
    except KeyError:  # a uid without a passwd entry (a container run as an arbitrary user)
        account_home = ""
    if account_home and os.path.isdir(account_home) and os.access(account_home, os.W_OK | os.X_OK):
        return account_home
    private = Path(tempfile.gettempdir()) / f"smsledger-duckdb-{os.getuid()}"
    try:
        private.mkdir(mode=0o700, exist_ok=True)
        owner_only = private.stat().st_uid == os.getuid() and not private.stat().st_mode & 0o022
    except OSError:
        owner_only = False
    if not owner_only:
        raise LakeConfigError(
            f"HOME is {'not set' if not home else f'{home!r}, not a folder'} and DuckDB needs a home folder for the lake's "
            "extensions (<home>/.duckdb/extensions): set HOME to a writable folder")
    return str(private)


def attach(con: duckdb.DuckDBPyConnection, location: LakeLocation, *, read_only: bool = False) -> None:
    """Attach the lake to `con` as `lake` and make it the default catalog (so raw.x, staging.y,
    marts.z resolve to it). Read-only attaches its Postgres catalog read-only too. For an s3://
    data path, httpfs is loaded and the object store's credentials become a secret of this
    session only. Errors are one line without a password (`LakeConfigError`)."""
    con.execute("set enable_progress_bar = false")  # DuckLake commits would draw one on stdout
    home = duckdb_home()
    if home is not None:
        con.execute(f"set home_directory = {_sql_string(home)}")
    remote = location.object_store is not None or (location.data_path or "").startswith("s3://")
    load_extensions(con, object_store=remote)
    if location.object_store is not None:
        _create_object_store_secret(con, location.object_store.secret_options())
    options = ["read_only"] if read_only else []
    if location.data_path is not None and not read_only:
        # The catalog records the data path on creation and refuses another one later: readers
        # take the recorded one, so a reader's setting can never disagree with it.
        options.append(f"data_path {_sql_string(location.data_path)}")
    statement = f"attach {_sql_string(str(location))} as {CATALOG}"
    if options:
        statement += f" ({', '.join(options)})"
    try:
        con.execute(statement)
    except duckdb.Error as exc:
        raise LakeConfigError(f"cannot open the lake {location}: {one_line(exc)}") from None
    con.execute(f"use {CATALOG}")


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


def is_lake_connection(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the connection's default catalog is a lake."""
    return con.execute("select type = 'ducklake' from duckdb_databases() "
                       "where database_name = current_database()").fetchone()[0]


def data_path_of(con: duckdb.DuckDBPyConnection) -> str:
    """The data path recorded in the attached lake's catalog."""
    (path,) = con.execute(f"select value from {CATALOG}.options() where option_name = 'data_path'").fetchone()
    return path


def one_line(exc: BaseException) -> str:
    """A DuckDB error as one line, any password masked."""
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
    attempts: int = CONFLICT_ATTEMPTS,
    first_delay: float = 0.05,
    max_delay: float = 2.0,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Run `work` (a whole transaction: its reads too, since what it read may have changed) until
    it commits without a conflict, at most `attempts` times, waiting a jittered, doubling delay
    between tries so that writers that collided do not collide again. Other errors, and the last
    conflict, are raised as they are. On a DuckDB file nothing raises a DuckLake conflict: `work`
    runs once."""
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


def retry_conflicts(unit: Callable[..., T]) -> Callable[..., T]:
    """`unit` (a function that does one whole unit of work on the connection it is given: it reads,
    then writes in one transaction) re-run from the start when its commit loses to another
    writer's, by `retry_on_conflict`; each retry is logged (the run's logs, in Dagster)."""

    @functools.wraps(unit)
    def run(*args, **kwargs):
        def logged(attempt: int, exc: BaseException) -> None:
            log.info(f"{unit.__qualname__}: the commit lost to another writer's ({one_line(exc)[:160]}); "
                     f"running it again (try {attempt + 1} of {CONFLICT_ATTEMPTS})")

        return retry_on_conflict(lambda: unit(*args, **kwargs), on_retry=logged)

    return run
