"""Lake maintenance (pipelines/warehouse/maintenance.py, `smsledger lake-maintenance`, the Dagster
job): after several syncs' worth of commits it leaves fewer files and snapshots and every table's
rows as they were (EXCEPT ALL both ways), time travel to an expired snapshot fails, young files
stay, it is safe beside writers and after a SIGKILL at any point; on a DuckDB file it checkpoints.
Against a real PostgreSQL server (tests/postgres_support.py)."""

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
import zoneinfo
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import postgres_support
from support import sim_client, smsledger

from pipelines.config import ConfigError, Settings
from pipelines.days import DayRange
from pipelines.ingest.drain import drain_queue
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.spool import Spool
from pipelines.warehouse import lake
from pipelines.warehouse.db import connect, open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.maintenance import maintain
from pipelines.warehouse.marts import MARTS, rebuild
from pipelines.warehouse.sending_app import load_source_files
from pipelines.warehouse.staging import build_messages, build_replies

lake_location = postgres_support.lake_location
postgres = postgres_support.postgres

NOTHING_KEPT = dict(retention=dt.timedelta(0), grace=dt.timedelta(0))
MART_PARAMS = {"marts.message_status": {"attribution_days": 7},
               "marts.replies": {"attribution_hours": 72, "opt_out_words": ["td", "stop"]},
               "marts.provider_statistics_hourly": {"timezone": "UTC"}}


def sync_days(con, days: DayRange) -> None:
    """What the daily run writes for its days: staging and every mart, one day slice at a time."""
    for day in days.days():
        one = DayRange(day, day, days.tz)
        build_messages(con, one)
        build_replies(con, one)
        for table in MARTS:
            rebuild(con, table, one, **MART_PARAMS.get(table, {}))


@pytest.fixture
def synced_lake(lake_location, tmp_path):
    """A lake after a drain and three syncs of three days: about a hundred commits."""
    # traffic ends at the last UTC midnight, so the three synced days hold all of it whatever the
    # time of day the test runs (ending an hour ago, they held two to three days' worth)
    now = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
    config = SimulatorConfig(port=0, seed=7, days=3, messages_per_day=150, out_dir=tmp_path / "sim", now=now,
                             clock_runs=False, rate_scale=0)
    days = DayRange(dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=3),
                    dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=1), zoneinfo.ZoneInfo("UTC"))
    with Simulator(config) as sim:
        client = sim_client(sim)
        spool = Spool(tmp_path / "spool")
        drain_queue(client, spool, "PullSmsSendStatus")
        drain_queue(client, spool, "PullSmsReplyStatus")
        client.close()
    with open_warehouse(lake_location) as con:
        load_source_files(con, "sends", str(tmp_path / "sim" / "sends.ndjson"))
        load_spool(con, spool)
        for _ in range(3):
            sync_days(con, days)
    return lake_location


def tables(con) -> list[str]:
    return [f"{s}.{t}" for s, t in con.execute(
        f"select schema_name, table_name from duckdb_tables() where database_name = '{lake.CATALOG}' order by all").fetchall()]


def copy_tables(con, target: str | Path = ":memory:") -> None:
    """Every table of the lake into the catalog `before` (in memory, or a DuckDB file)."""
    con.execute(f"attach '{target}' as before")
    for table in tables(con):
        schema, name = table.split(".")
        con.execute(f"create schema if not exists before.{schema}")
        con.execute(f"create table before.{table} as select * from {lake.CATALOG}.{table}")


def differing_tables(con) -> dict[str, tuple[int, int]]:
    """Tables whose rows differ from the copy in `before`: (rows only now, rows only before)."""
    differing = {}
    for table in tables(con):
        now_only = con.execute(f"select count(*) from (from {lake.CATALOG}.{table} except all from before.{table})").fetchone()[0]
        before_only = con.execute(f"select count(*) from (from before.{table} except all from {lake.CATALOG}.{table})").fetchone()[0]
        if now_only or before_only:
            differing[table] = (now_only, before_only)
    return differing


def files_on_disk(location) -> dict[Path, int]:
    """Every file in the lake's data path, with its size."""
    return {p: p.stat().st_size for p in Path(location.data_path).rglob("*") if p.is_file()}


def file_names(location) -> set[str]:
    """The names in the lake's data path (no stat: a running maintenance deletes files meanwhile)."""
    return {name for _, _, names in os.walk(location.data_path) for name in names}


def test_maintenance_after_syncs_removes_files_and_snapshots_and_keeps_every_row(synced_lake):
    con = connect(synced_lake)
    try:
        copy_tables(con)
        assert con.execute("select count(*) from before.marts.message_status").fetchone()[0] > 300
        old_version = con.execute(f"select min(snapshot_id) + 5 from {lake.CATALOG}.snapshots()").fetchone()[0]
        files_before = files_on_disk(synced_lake)

        report = maintain(con, **NOTHING_KEPT)

        files_after = files_on_disk(synced_lake)
        assert differing_tables(con) == {}
        # the snapshots of the syncs are gone but the newest; files merged, the replaced ones deleted
        print("\n".join(report.lines()))
        assert report.snapshots_before > 80 and report.snapshots_after == 1
        assert report.snapshots_expired >= report.snapshots_before - 1
        assert report.files_merged > report.files_written > 0
        assert report.live_after.data_files < report.live_before.data_files
        assert len(files_after) < len(files_before) / 2
        # what is left on disk is what the one snapshot reads; every file gone is in the report (with a
        # file the run itself wrote and replaced, e.g. a flushed table's file merged again: one or two)
        assert len(files_after) == report.live_after.data_files + report.live_after.delete_files
        removed = files_before.keys() - files_after.keys()
        assert len(removed) <= report.files_deleted <= len(removed) + report.live_before.data_files
        assert sum(files_before[p] for p in removed) <= report.bytes_deleted
        # time travel to an expired snapshot fails as DuckLake documents it
        with pytest.raises(duckdb.InvalidInputException, match=f"No snapshot found at version {old_version}"):
            con.execute(f"select count(*) from marts.message_status at (version => {old_version})").fetchall()
        # again: nothing left to do
        again = maintain(con, **NOTHING_KEPT)
        assert (again.files_merged, again.snapshots_expired, again.files_deleted) == (0, 0, 0)
        assert differing_tables(con) == {}
    finally:
        con.close()


def test_the_retention_keeps_time_travel_and_the_grace_keeps_young_files(synced_lake):
    con = connect(synced_lake)
    try:
        version = con.execute(f"select min(snapshot_id) + 5 from {lake.CATALOG}.snapshots()").fetchone()[0]
        then = con.execute(f"select count(*) from marts.delivery_daily at (version => {version})").fetchone()[0]
        files_before = len(files_on_disk(synced_lake))
        report = maintain(con, retention=dt.timedelta(days=7))  # the defaults: 7 days, 24 hours' grace
        assert report.files_written > 0 and report.snapshots_expired == 0 and report.files_deleted == 0
        assert con.execute(f"select count(*) from marts.delivery_daily at (version => {version})").fetchone()[0] == then
        assert len(files_on_disk(synced_lake)) >= files_before + report.files_written
    finally:
        con.close()


def test_orphaned_files_go_once_older_than_the_grace_and_a_young_one_stays(lake_location):
    with open_warehouse(lake_location) as con:
        folder = Path(lake_location.data_path) / "raw" / "signs"
        folder.mkdir(parents=True, exist_ok=True)
        # what a writer leaves when killed before its commit; a young one may be a running writer's
        old, young = folder / "ducklake-killed-writer.parquet", folder / "ducklake-writing-now.parquet"
        for path in (old, young):
            con.execute(f"copy (select range as i from range(1000)) to '{path}' (format parquet)")
        a_day_and_more = time.time() - 25 * 3600
        os.utime(old, (a_day_and_more, a_day_and_more))
        report = maintain(con, retention=dt.timedelta(days=7))
        assert (report.orphaned_files_deleted, report.old_files_deleted) == (1, 0)
        assert not old.exists() and young.exists()
        assert report.bytes_deleted == young.stat().st_size  # the same rows, the same size
        # no grace at all: a young orphan may be a running writer's file, so it still waits the floor
        assert maintain(con, retention=dt.timedelta(days=7), grace=dt.timedelta(0)).orphaned_files_deleted == 0
        assert young.exists()


WRITER = textwrap.dedent("""
    import sys
    import duckdb
    from pipelines.config import LakeLocation
    from pipelines.warehouse import lake
    location, day = LakeLocation(sys.argv[1], sys.argv[2]), int(sys.argv[3])
    con = duckdb.connect()
    lake.attach(con, location)
    for version in range(12):
        def rewrite():
            con.execute("begin")
            con.execute(f"delete from slices where day = {day}")
            con.execute(f"insert into slices select {day}, {version}, range from range(300)")
            con.execute("commit")
        lake.retry_on_conflict(rewrite)
    print("done")
""")


def test_maintenance_beside_writers_loses_nothing_and_stops_none(lake_location):
    """Two writers rewrite their days of one table (the staging/marts pattern) while maintenance
    runs three times, keeping nothing: every rewrite lands, each day holds its last version."""
    con = connect(lake_location)
    try:
        con.execute("create table slices (day int, version int, n int)")
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, lake_location.conninfo, lake_location.data_path,
                                     str(day)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                   for day in (1, 2)]
        reports = []
        while len(reports) < 3 or any(w.poll() is None for w in writers):
            if len(reports) < 3:
                reports.append(maintain(con, **NOTHING_KEPT))
            else:
                time.sleep(0.2)
        for writer in writers:
            out, err = writer.communicate()
            assert writer.returncode == 0 and out.strip() == "done", err[-2000:]
        assert sum(r.snapshots_expired for r in reports) > 0
        assert con.execute("select day, version, count(*) from slices group by all order by all").fetchall() == [
            (1, 11, 300), (2, 11, 300)]
        maintain(con, **NOTHING_KEPT)
        assert con.execute("select count(*) from slices").fetchone()[0] == 600
    finally:
        con.close()


def test_a_maintenance_killed_at_any_point_leaves_the_lake_readable_and_the_next_run_completes(synced_lake, tmp_path):
    copy = tmp_path / "before.duckdb"
    con = connect(synced_lake)
    try:
        copy_tables(con, copy)
    finally:
        con.close()
    env = {"SMSLEDGER_WAREHOUSE": str(synced_lake), "SMSLEDGER_LAKE_DATA_PATH": synced_lake.data_path,
           "PGPASSWORD": os.environ["PGPASSWORD"]}
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_"))}
    killed = 0
    # kills at points of the maintenance's own progress, not of the clock (a fast machine finishes
    # it in well under a second): once it has written or deleted its first file, after a pause
    for pause in (0.0, 0.05, 0.15, 0.4, 1.0):
        files = file_names(synced_lake)
        process = subprocess.Popen([sys.executable, "-m", "pipelines.app.cli", "lake-maintenance", "--retention-days",
                                    "0", "--grace-hours", "0"], env={**base, **env}, cwd=tmp_path,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while process.poll() is None and file_names(synced_lake) == files:
            time.sleep(0.005)
        time.sleep(pause)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed += 1
        process.wait()
        check = connect(synced_lake)  # readable, every row as it was, after each kill
        try:
            check.execute(f"attach '{copy}' as before (read_only)")
            assert differing_tables(check) == {}, f"after a kill {pause}s into its file work"
        finally:
            check.close()
    assert killed >= 2
    # what the killed runs wrote and never committed waits out the orphans' floor (it might have
    # been a running writer's): aged past it, the next run deletes it
    probe = connect(synced_lake)
    try:
        orphans = [path for (path,) in probe.execute(
            f"select path from ducklake_delete_orphaned_files('{lake.CATALOG}', dry_run => true, cleanup_all => true)"
        ).fetchall()]
    finally:
        probe.close()
    aged = time.time() - 2 * 3600
    for path in orphans:
        os.utime(path, (aged, aged))
    done = smsledger("lake-maintenance", "--retention-days", "0", "--grace-hours", "0", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "expired" in done.stdout and "deleted" in done.stdout
    after = connect(synced_lake)
    try:
        after.execute(f"attach '{copy}' as before (read_only)")
        assert differing_tables(after) == {}
        assert after.execute(f"select count(*) from {lake.CATALOG}.snapshots()").fetchone()[0] == 1
        # what the killed runs wrote and never committed is gone too
        assert after.execute(f"select count(*) from ducklake_delete_orphaned_files('{lake.CATALOG}', dry_run => true, "
                             "cleanup_all => true)").fetchone()[0] == 0
    finally:
        after.close()


def test_the_command_on_a_duckdb_file_checkpoints_and_on_none_does_nothing(tmp_path):
    file = tmp_path / "warehouse.duckdb"
    done = smsledger("lake-maintenance", env={"SMSLEDGER_WAREHOUSE": str(file)}, cwd=tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, f"no warehouse at {file}: nothing to do")
    assert not file.exists()
    with open_warehouse(file) as con:
        con.execute("insert into raw.signs (sign_id, sign_name, pulled_at) select range, 'x', now() from range(20000)")
        con.execute("delete from raw.signs where sign_id % 2 = 0")
    done = smsledger("lake-maintenance", env={"SMSLEDGER_WAREHOUSE": str(file)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("checkpointed the DuckDB file: ") and "no snapshots" in done.stdout
    with open_warehouse(file, read_only=True) as con:
        assert con.execute("select count(*) from raw.signs").fetchone()[0] == 10000


def test_the_dagster_asset_reports_what_it_removed(synced_lake, tmp_path, monkeypatch):
    from assets.maintenance import maintenance_definitions
    from assets.resources import WarehouseResource

    settings = Settings.from_env({"SMSLEDGER_WAREHOUSE": str(synced_lake), "SMSLEDGER_LAKE_DATA_PATH": synced_lake.data_path,
                                  "SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS": "0"}, require_credentials=False)
    asset, _, schedule = maintenance_definitions(settings)
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    result = dg.materialize([asset], resources={"warehouse": WarehouseResource.from_settings(settings)},
                            run_config={"ops": {"warehouse__maintenance": {"config": {"grace_hours": 0}}}})
    metadata = {k: v.value for k, v in result.asset_materializations_for_node("warehouse__maintenance")[0].metadata.items()}
    assert metadata["warehouse"] == "lake" and metadata["retention_days"] == 0
    assert metadata["snapshots_expired"] > 80 and metadata["snapshots_after"] == 1
    assert metadata["files_deleted"] > 0 and metadata["bytes_deleted"] > 0


def test_a_bad_retention_is_one_line_naming_the_variable():
    for value in ("-1", "week", "nan"):
        with pytest.raises(ConfigError, match="SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS=") as caught:
            Settings.from_env({"SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS": value}, require_credentials=False)
        assert "\n" not in str(caught.value)
    assert Settings.from_env({}, require_credentials=False).lake_snapshot_retention == dt.timedelta(days=7)


def test_a_purge_on_a_lake_leaves_no_time_travel_to_the_numbers_it_took(lake_location):
    """An update on DuckLake keeps the old files for time travel: the personal-data purge expires
    the snapshots before it and deletes their files, so no `at (version => n)` reads a number."""
    from pipelines.warehouse.retention import purge_personal_data

    number, old = "+8613800000001", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with open_warehouse(lake_location) as con:
        con.execute("insert into raw.send_status (record_key, serial_no, phone_number, batch_id, record_index, action, "
                    "pulled_at, sms_sdk_app_id) values ('k', 's', $n, 'b', 0, 'PullSmsSendStatus', $t, '1400000000')",
                    {"n": number, "t": old})
        before = con.execute(f"select max(snapshot_id) from {lake.CATALOG}.snapshots()").fetchone()[0]
        report = purge_personal_data(con, numbers_before=old + dt.timedelta(days=1), texts_before=None)
        assert report.rows["raw.send_status"] == 1 and report.lake_snapshots_expired >= 1
        assert con.execute("select phone_number from raw.send_status").fetchall() == [(None,)]
        with pytest.raises(duckdb.InvalidInputException, match=f"No snapshot found at version {before}"):
            con.execute(f"select phone_number from raw.send_status at (version => {before})").fetchall()
        data = Path(lake_location.data_path)
        held = [p for p in data.rglob("*.parquet")
                if number in str(con.execute(f"select * from read_parquet('{p}')").fetchall())]
        assert held == []
