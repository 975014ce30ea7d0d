"""Staging keeps a day's rows in DuckDB and hands polars only distinct times and new numbers, a
batch at a time (pipelines/warehouse/staging.py): the batches, however small, give the rows one
batch gives; a second build of the same days gives the same rows; a memory limit someone set on
the warehouse is left alone."""

import datetime as dt
import zoneinfo

from benchmarks.receipts import generate

from pipelines.days import DayRange
from pipelines.spool import Spool
from pipelines.warehouse import staging
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.sending_app import load_source_files

TABLES = ("staging.sends", "staging.receipts", "staging.conversions", "staging.replies")


def loaded(tmp_path):
    """A warehouse of 20k generated receipts over 3 days (dirty numbers and times, orphans), and its days."""
    manifest = generate(tmp_path / "input", 20_000, days=3, seed=3, log=lambda message: None)
    path = tmp_path / "w.duckdb"
    with open_warehouse(path) as con:
        load_spool(con, Spool(tmp_path / "input" / "spool"))
        load_source_files(con, "sends", str(tmp_path / "input" / "sends" / "*.ndjson"))
        load_source_files(con, "conversions", str(tmp_path / "input" / "conversions.ndjson"))
    days = DayRange(dt.date.fromisoformat(manifest["first_day"]), dt.date.fromisoformat(manifest["last_day"]),
                    zoneinfo.ZoneInfo("UTC"))
    return path, days, manifest


def stage(con, days):
    reports = []
    for day in days.days():
        one = DayRange(day, day, days.tz)
        reports.append((staging.build_messages(con, one), staging.build_replies(con, one)))
    return reports


def snapshot(con, name):
    con.execute(f"create schema {name}")
    for table in TABLES:
        con.execute(f"create table {name}.{table.split('.')[1]} as from {table}")


def differences(con, a, b):
    return {t: con.execute(f"select count(*) from ((from {a}.{t} except all from {b}.{t}) union all "
                           f"(from {b}.{t} except all from {a}.{t}))").fetchone()[0]
            for t in (table.split(".")[1] for table in TABLES)}


def test_small_batches_and_a_second_build_give_the_rows_of_one_batch(tmp_path, monkeypatch):
    path, days, manifest = loaded(tmp_path)
    with open_warehouse(path) as con:
        whole = stage(con, days)
        snapshot(con, "one_batch")
        again = stage(con, days)  # every number known now: nothing to normalize
        snapshot(con, "again")
        monkeypatch.setattr(staging, "NORMALIZE_BATCH", 97)
        con.execute("delete from staging.phone_numbers")
        batched = stage(con, days)
        nothing = {"sends": 0, "receipts": 0, "conversions": 0, "replies": 0}
        assert differences(con, "one_batch", "again") == nothing
        assert differences(con, "one_batch", "staging") == nothing
        assert whole == again == batched
        counts = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in TABLES}
        # nearly every sends-log row and receipt the generator wrote lands on one of its days (all
        # but those of its last few minutes: they are sent after its last day, on the next)
        assert 0.995 * manifest["sends_rows"] <= counts["staging.sends"] <= manifest["sends_rows"]
        assert 0.995 * manifest["receipts"] <= counts["staging.receipts"] <= manifest["receipts"]
        assert sum(m.receipts for m, _ in whole) == counts["staging.receipts"]
        assert con.execute("select count(*) from duckdb_tables() where temporary").fetchone()[0] == 0


def test_a_memory_limit_set_on_the_warehouse_is_left_alone(tmp_path):
    path, days, _ = loaded(tmp_path)
    with open_warehouse(path) as con:
        con.execute("set memory_limit = '1GB'")
        set_before = con.execute("select current_setting('memory_limit')").fetchone()[0]
        stage(con, days)
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == set_before
        con.execute("reset memory_limit")
        default = con.execute("select current_setting('memory_limit')").fetchone()[0]
        stage(con, days)  # staging lowers DuckDB's default limit for its work only
        assert con.execute("select current_setting('memory_limit')").fetchone()[0] == default
