"""Several processes writing one lake: which commits conflict, the bounded retry that lands them
all, and a writer killed with SIGKILL in the middle of its commits (the lake stays readable, the
next writer completes). Against a real PostgreSQL server (tests/postgres_support.py)."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest
import postgres_support

from pipelines.warehouse import lake
from pipelines.warehouse.db import connect, transaction

ROWS_PER_DAY = 1000
DAY0 = dt.date(2026, 1, 1)

# The fixtures of tests/postgres_support.py, visible to this module's tests.
lake_location = postgres_support.lake_location
postgres = postgres_support.postgres



def _rewrite_day(con: duckdb.DuckDBPyConnection, day: dt.date, version: int) -> None:
    """The marts' pattern: one transaction deletes a day's slice and inserts it again."""
    with transaction(con):
        con.execute("delete from marts.daily where day = ?", [day])
        con.execute("insert into marts.daily select ?::date, i, ? from range(?) r(i)", [day, version, ROWS_PER_DAY])


@pytest.fixture
def daily(lake_location):
    con = connect(lake_location)
    con.execute("create schema marts")
    con.execute("create table marts.daily (day date not null, n bigint, version integer)")
    for i in range(4):
        _rewrite_day(con, DAY0 + dt.timedelta(days=i), 0)
    yield con
    con.close()


def test_rewriting_another_day_of_the_same_table_conflicts_and_the_retry_lands_it(daily, lake_location):
    other = connect(lake_location)
    try:
        # Appends of two writers to the same table both land (DuckLake retries the catalog race).
        daily.execute("begin")
        other.execute("begin")
        daily.execute("insert into marts.daily values ('2026-02-01', 1, 0)")
        other.execute("insert into marts.daily values ('2026-02-02', 1, 0)")
        daily.execute("commit")
        other.execute("commit")
        # An append loses to a delete committed meanwhile in the same table, even of other rows
        # (the loader appending to raw.quarantine while sending_app deletes a file's rows from it).
        daily.execute("begin")
        other.execute("begin")
        daily.execute("delete from marts.daily where day = '2026-02-01'")
        other.execute("insert into marts.daily values ('2026-02-03', 1, 0)")
        daily.execute("commit")
        with pytest.raises(duckdb.TransactionException, match="but another transaction has deleted") as caught:
            other.execute("commit")
        assert lake.is_commit_conflict(caught.value)
        # Two slice rewrites of different days: the second commit loses.
        daily.execute("begin")
        daily.execute("delete from marts.daily where day = ?", [DAY0])
        daily.execute("insert into marts.daily select ?::date, i, 1 from range(?) r(i)", [DAY0, ROWS_PER_DAY])
        other.execute("begin")
        other.execute("delete from marts.daily where day = ?", [DAY0 + dt.timedelta(days=1)])
        other.execute("insert into marts.daily select ?::date, i, 1 from range(?) r(i)", [DAY0 + dt.timedelta(days=1), ROWS_PER_DAY])
        daily.execute("commit")
        with pytest.raises(duckdb.TransactionException) as caught:
            other.execute("commit")
        assert lake.is_commit_conflict(caught.value)
        assert "Transaction conflict - attempting to insert into table" in str(caught.value)
        assert "but another transaction has deleted" in str(caught.value)
        # the failed commit rolled back: nothing of it is visible, and the session can go on
        assert other.execute("select count(*) from marts.daily where day = ? and version = 1",
                             [DAY0 + dt.timedelta(days=1)]).fetchone() == (0,)

        # The retry: the first try loses to another writer's rewrite committed just before its
        # own commit; the second try lands.
        attempts, retried = [], []

        def rewrite_second_day():
            attempts.append(1)
            with transaction(other):
                other.execute("delete from marts.daily where day = ?", [DAY0 + dt.timedelta(days=1)])
                other.execute("insert into marts.daily select ?::date, i, 2 from range(?) r(i)",
                              [DAY0 + dt.timedelta(days=1), ROWS_PER_DAY])
                if len(attempts) == 1:
                    _rewrite_day(daily, DAY0 + dt.timedelta(days=2), 2)

        lake.retry_on_conflict(rewrite_second_day, first_delay=0.001, on_retry=lambda n, exc: retried.append(n))
        assert retried == [1] and len(attempts) == 2
        counts = dict(other.execute("select day, count(*) from marts.daily where version = 2 group by day").fetchall())
        assert counts == {DAY0 + dt.timedelta(days=1): ROWS_PER_DAY, DAY0 + dt.timedelta(days=2): ROWS_PER_DAY}
    finally:
        other.close()


def test_retry_on_conflict_gives_up_after_its_attempts_and_passes_other_errors(daily):
    conflict = duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Failed to commit DuckLake transaction. Transaction conflict - '
        'attempting to insert into table with index "2" - but another transaction has deleted from it')
    calls = []

    def always_conflicts():
        calls.append(1)
        raise conflict

    with pytest.raises(duckdb.TransactionException):
        lake.retry_on_conflict(always_conflicts, attempts=3, first_delay=0.001)
    assert len(calls) == 3

    def bad_sql():
        calls.append(1)
        daily.execute("select * from marts.no_such_table")

    calls.clear()
    with pytest.raises(duckdb.CatalogException):
        lake.retry_on_conflict(bad_sql, first_delay=0.001)
    assert calls == [1]


WRITER = r"""
import datetime as dt, sys, time
from pipelines.config import LakeLocation
from pipelines.warehouse import lake
from pipelines.warehouse.db import connect, transaction

conninfo, data_path, first_day, days, rounds, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
con = connect(LakeLocation(conninfo, data_path))
retries = 0

def rewrite(day, version):
    with transaction(con):
        con.execute("delete from marts.daily where day = ?", [day])
        con.execute("insert into marts.daily select ?::date, i, ? from range(?) r(i)", [day, version, rows])

def count_retry(attempt, exc):
    global retries
    retries += 1

print("ready", flush=True)
for version in range(1, rounds + 1):
    for i in range(days):
        day = dt.date.fromisoformat(first_day) + dt.timedelta(days=i)
        lake.retry_on_conflict(lambda: rewrite(day, version), attempts=30, on_retry=count_retry)
    print(f"round {version}", flush=True)
print(f"retries {retries}", flush=True)
"""


def _writer(location, first_day: dt.date, days: int, rounds: int, rows: int = ROWS_PER_DAY) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, location.conninfo, location.data_path, first_day.isoformat(), str(days), str(rounds), str(rows)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def test_four_processes_rewriting_their_own_days_all_land_with_the_retry(daily, lake_location):
    rounds = 6
    writers = [_writer(lake_location, DAY0 + dt.timedelta(days=i), 1, rounds) for i in range(4)]
    outputs = [w.communicate(timeout=300) for w in writers]
    for writer, (out, err) in zip(writers, outputs):
        assert writer.returncode == 0, err[-2000:]
    retries = sum(int(out.split("retries ")[1]) for out, _ in outputs)
    rows = daily.execute("select day, version, count(*) from marts.daily where day < '2026-01-05' group by all order by day").fetchall()
    # every day holds exactly its last version, once: nothing lost, nothing doubled
    assert rows == [(DAY0 + dt.timedelta(days=i), rounds, ROWS_PER_DAY) for i in range(4)]
    # the writers did collide (that is what the retry is for); 4 x 6 commits landed regardless
    print(f"{4 * rounds} slice rewrites by 4 processes, {retries} retries")


def test_a_writer_killed_mid_commit_leaves_the_lake_readable_and_the_next_writer_completes(daily, lake_location):
    rows = 200_000  # a commit that takes a while: Parquet files written, then the catalog updated
    for delay in (0.3, 0.9, 1.6):
        writer = _writer(lake_location, DAY0, 4, 50, rows)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
        writer.send_signal(signal.SIGKILL)
        writer.communicate(timeout=60)
        assert writer.returncode == -signal.SIGKILL
        # Readable, and each day is one whole version: a commit landed whole or not at all.
        per_day = daily.execute("select day, count(*), count(distinct version) from marts.daily "
                                "where day < '2026-01-05' group by day order by day").fetchall()
        assert [(n in (ROWS_PER_DAY, rows), versions) for _, n, versions in per_day] == [(True, 1)] * 4
    survivor = _writer(lake_location, DAY0, 4, 1, rows)
    out, err = survivor.communicate(timeout=300)
    assert survivor.returncode == 0, err[-2000:]
    assert daily.execute("select count(*), min(version), max(version) from marts.daily where day < '2026-01-05'").fetchone() == (
        4 * rows, 1, 1)
