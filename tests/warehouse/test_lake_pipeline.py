"""The pipeline's own SQL and loaders on a DuckLake give the rows they give on a DuckDB file: the
schema, the sending application's files and the statistics (upserts by MERGE), the spool loader
(ledger rows and records in one transaction, anti join on record keys, idempotent re-runs),
staging (delete a day slice + insert), every mart, the gap-fill plans and the reports, from one
simulated week, by the same code on both. Against a real PostgreSQL server
(tests/postgres_support.py)."""

import datetime as dt
import shutil
import time
import zoneinfo

import duckdb
import pytest
from pathlib import Path
import postgres_support
from support import sim_client

import pipelines.sql
from pipelines.days import DayRange
from pipelines.ingest.drain import drain_queue
from pipelines.ingest.gapfill import plan_gap_fill
from pipelines.ingest.statistics import fetch_statistics, store_statistics
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.spool import Spool
from pipelines.config import DEMO_SDK_APP_ID
from pipelines.warehouse import lake
from pipelines.warehouse.db import open_warehouse, sql_text, transaction, upsert_frame
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.marts import MARTS, rebuild
from pipelines.warehouse.sending_app import load_source_files
from pipelines.warehouse.staging import build_messages, build_replies

# Columns a load stamps with the time it ran: they differ between two loads by design.
LOAD_TIMES = {"raw.batches": "loaded_at", "raw.source_files": "loaded_at", "raw.quarantine": "quarantined_at",
              "raw.statistics_hourly": "pulled_at", "raw.gap_fill_searches": "registered_at"}

# The fixtures of tests/postgres_support.py, visible to this module's tests.
lake_location = postgres_support.lake_location
postgres = postgres_support.postgres



def mart_params(table: str, settings_tz: str = "UTC") -> dict:
    return {
        "marts.message_status": {"attribution_days": 7},
        "marts.replies": {"attribution_hours": 72, "opt_out_words": ["td", "unsubscribe", "stop", "退订"]},
        "marts.provider_statistics_hourly": {"timezone": settings_tz},
    }.get(table, {})


def tables(con) -> list[str]:
    return [f"{s}.{t}" for s, t in con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = current_database() order by all").fetchall()]


def rows(con, table: str, catalog: str = lake.CATALOG) -> list[tuple]:
    exclude = f" exclude ({LOAD_TIMES[table]})" if table in LOAD_TIMES else ""
    return con.execute(f"select *{exclude} from {catalog}.{table} order by all").fetchall()


def test_the_pipeline_on_a_lake_gives_the_rows_of_a_duckdb_file(tmp_path, lake_location):
    now = time.time() - 3600
    plan_now = int(time.time())
    config = SimulatorConfig(port=0, seed=31, days=3, messages_per_day=400, out_dir=tmp_path / "sim", now=now,
                             clock_runs=False, rate_scale=0, faults="PullSmsSendStatus:reset=0.2")
    first = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=3)
    days = DayRange(first, first + dt.timedelta(days=3), zoneinfo.ZoneInfo("UTC"))
    with Simulator(config) as sim:
        client = sim_client(sim)
        spool = Spool(tmp_path / "spool")
        drain_queue(client, spool, "PullSmsSendStatus", limit=20, max_consecutive_failures=50)
        drain_queue(client, spool, "PullSmsReplyStatus")
        statistics = fetch_statistics(client, days).frame
        client.close()
    shutil.copytree(tmp_path / "spool", tmp_path / "spool-for-lake")
    shutil.copytree(tmp_path / "spool", tmp_path / "spool-again")

    def build(con) -> None:
        for day in days.days():
            one = DayRange(day, day, days.tz)
            build_messages(con, one)
            build_replies(con, one)
            for table in MARTS:
                rebuild(con, table, one, **mart_params(table))

    def load(con, spool_dir: Path):
        load_source_files(con, "sends", str(tmp_path / "sim" / "sends.ndjson"))
        load_source_files(con, "conversions", str(tmp_path / "sim" / "conversions.ndjson"))
        report = load_spool(con, Spool(spool_dir))
        store_statistics(con, statistics)
        store_statistics(con, statistics)  # a re-pull replaces the hours
        # twice, as the daily runs do: a reply counts under its message's day once both are built
        build(con)
        build(con)
        return report

    file = tmp_path / "warehouse.duckdb"
    with open_warehouse(file) as con:
        file_load = load(con, tmp_path / "spool")
        gaps_in_file = plan_gap_fill(con, now=plan_now)

    with open_warehouse(lake_location) as con:
        lake_load = load(con, tmp_path / "spool-for-lake")
        assert lake_load == file_load and lake_load.new_records > 1000 and lake_load.indeterminate > 0
        # loading the same files again (a crash after the commit) adds nothing
        again = load_spool(con, Spool(tmp_path / "spool-again"))
        assert (again.batches, again.skipped_batches) == (0, lake_load.batches)
        # an unchanged source file is not read again
        assert load_source_files(con, "sends", str(tmp_path / "sim" / "sends.ndjson")).unchanged_files == 1
        gaps_in_lake = plan_gap_fill(con, now=plan_now)

        con.execute(f"attach '{file}' as file (read_only)")
        in_file = [t for (t,) in con.execute("select schema_name || '.' || table_name from duckdb_tables() "
                                             "where database_name = 'file' order by 1").fetchall()]
        assert tables(con) == in_file
        for table in tables(con):
            assert rows(con, table) == rows(con, table, catalog="file"), table
        assert con.execute("select count(*) from marts.message_status").fetchone()[0] > 1000
        for report in sorted(p.stem for p in (Path(pipelines.sql.__file__).parent / "reports").glob("*.sql")):
            con.execute("use file")
            expected = con.execute(sql_text(f"reports/{report}"), _report_params(report, days)).fetchall()
            con.execute(f"use {lake.CATALOG}")
            got = con.execute(sql_text(f"reports/{report}"), _report_params(report, days)).fetchall()
            assert got == expected, report
    # the gap-fill plans search the same losses and ask the same numbers (indeterminate pulls left
    # receipts to look for)
    assert _searches(gaps_in_lake) == _searches(gaps_in_file) and any(s.numbers for s in gaps_in_file.searches)


def _searches(plan) -> list[tuple]:
    return [([loss.search_id for loss in s.losses], s.window_start, s.window_end, s.numbers, s.allowance)
            for s in plan.searches]


def _report_params(report: str, days: DayRange) -> dict:
    text = sql_text(f"reports/{report}")
    params = {**days.dates(), **days.instants(), **days.seconds(), "timezone": "UTC", "batch_ids": [],
              "first_app": DEMO_SDK_APP_ID}
    return {k: v for k, v in params.items() if f"${k}" in text}


def test_upsert_frame_replaces_by_key_on_a_lake_as_on_a_file(lake_location, tmp_path):
    """`upsert_frame` (MERGE) is what replaced `insert or replace` and `on conflict`, which a lake
    refuses (its tables have no keys): the same rows on a lake and on a file (whose raw.signs keeps
    its primary key)."""
    import polars as pl

    first = pl.DataFrame({"sign_id": [1, 2], "sign_name": ["Acme", "Beta"]}).with_columns(
        pulled_at=pl.lit(dt.datetime(2026, 1, 1, tzinfo=dt.UTC)))
    second = pl.DataFrame({"sign_id": [1, 3], "sign_name": ["Acme Ltd", "Gamma"]}).with_columns(
        pulled_at=pl.lit(dt.datetime(2026, 1, 2, tzinfo=dt.UTC)))
    results = []
    for warehouse in (lake_location, tmp_path / "w.duckdb"):
        with open_warehouse(warehouse) as con:
            if warehouse == lake_location:
                for statement in ("insert or replace into raw.signs (sign_id, pulled_at) values (1, now())",
                                  "insert into raw.signs (sign_id, pulled_at) values (1, now()) on conflict (sign_id) do nothing"):
                    with pytest.raises(duckdb.BinderException, match="UNIQUE/PRIMARY KEY"):
                        con.execute(statement)
            with transaction(con):
                upsert_frame(con, "raw.signs", first, key=["sign_id"])
            upsert_frame(con, "raw.signs", second, key=["sign_id"])
            results.append(con.execute("select sign_id, sign_name, day(pulled_at) from raw.signs order by 1").fetchall())
    assert results[0] == [(1, "Acme Ltd", 2), (2, "Beta", 1), (3, "Gamma", 2)]
    assert results[0] == results[1]
