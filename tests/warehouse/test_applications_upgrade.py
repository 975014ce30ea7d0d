"""A warehouse made by the code of one application (commit 5140977, run in a subprocess from its
own files) keeps working after a second application is added: every raw table that names
applications gets the column, the rows loaded before belong to the first configured application,
nothing is lost or duplicated, the upgrade survives a SIGKILL before DuckDB's checkpoint, and the
second application's records then load beside the first's, each matching the simulator's truth."""

import datetime as dt
import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import zoneinfo

import pytest
from support import REPO, sim_client, start

from pipelines.ingest.drain import drain_queue
from pipelines.ingest.statistics import fetch_statistics, store_statistics
from pipelines.days import DayRange
from pipelines.simulator.state import receipt_fields
from pipelines.spool import Spool
from pipelines.tencent import actions as A
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool

OLD_COMMIT = "5140977"  # main before several applications
APPS = ("1400000000", "1400000111")
END = 1_795_000_000.0
NAMING = ("raw.batches", "raw.send_status", "raw.reply_status", "raw.statistics_hourly", "raw.gap_fill_searches")
# Staging and mart tables that name their application since the marts are grouped by it.
NAMING_LATER = ("staging.receipts", "staging.replies", "marts.message_status", "marts.replies", "marts.delivery_daily",
                "marts.conversion_daily", "marts.failure_reasons_daily", "marts.provider_statistics_hourly",
                "marts.reconciliation_daily")

OLD_SCRIPT = textwrap.dedent("""
    import datetime as dt, sys, zoneinfo
    import pipelines
    assert pipelines.__file__.startswith(sys.argv[4]), pipelines.__file__  # the old code, not ours
    from pipelines.days import DayRange
    from pipelines.ingest.drain import drain_queue
    from pipelines.ingest.gapfill import plan_gap_fill
    from pipelines.ingest.statistics import fetch_statistics, store_statistics
    from pipelines.spool import INDETERMINATE, Spool
    from pipelines.tencent import actions as A
    from pipelines.tencent.client import SmsApiClient
    from pipelines.warehouse.db import open_warehouse
    from pipelines.warehouse.loader import load_spool

    url, warehouse, spool_dir = sys.argv[1:4]
    client = SmsApiClient(endpoint=url, secret_id="AKIDsmsledgerDEMO0000000000000000000",
                          secret_key="smsledgerDEMOsecretKEY000000000000", sdk_app_id="1400000000", rate_limits={})
    spool = Spool(spool_dir)
    for action in A.QUEUE_ACTIONS:
        drain_queue(client, spool, action, workers=2)
    spool.write(A.PULL_SEND_STATUS, b"a pull lost on the way", kind=INDETERMINATE)
    day = DayRange(dt.date(2026, 11, 19), dt.date(2026, 11, 19), zoneinfo.ZoneInfo("UTC"))
    with open_warehouse(warehouse) as con:
        load_spool(con, spool)
        store_statistics(con, fetch_statistics(client, day).frame)
        plan_gap_fill(con, now=int(%(end)r))
        # staging and marts of those days, as that version builds them
        from pipelines.warehouse.marts import MARTS, rebuild
        from pipelines.warehouse.staging import build_messages, build_replies
        days = DayRange(dt.date(2026, 11, 17), dt.date(2026, 11, 19), zoneinfo.ZoneInfo("UTC"))
        build_messages(con, days)
        build_replies(con, days)
        params = {"marts.message_status": {"attribution_days": 7},
                  "marts.replies": {"attribution_hours": 72, "opt_out_words": ["td"]},
                  "marts.provider_statistics_hourly": {"timezone": "UTC"}}
        for table in MARTS:
            rebuild(con, table, days, **params.get(table, {}))
    # one response spooled and not loaded yet, named as that version names them
    drain_queue(client, spool, A.PULL_SEND_STATUS, workers=1)
""") % {"end": END}


@pytest.fixture(scope="module")
def old_code(tmp_path_factory):
    """The files of commit 5140977, laid out as its package is installed (sql/ as pipelines/sql)."""
    root = tmp_path_factory.mktemp("old_code")
    archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "pipelines", "sql"], capture_output=True)
    if archive.returncode != 0:
        pytest.skip(f"needs the repository's history (commit {OLD_COMMIT}): {archive.stderr.decode().strip()}")
    tarfile.open(fileobj=io.BytesIO(archive.stdout)).extractall(root, filter="data")
    shutil.move(root / "sql", root / "pipelines" / "sql")
    return root


def counts(con):
    return {table: con.execute(f"select count(*) from {table}").fetchone()[0] for table in NAMING + NAMING_LATER}


def test_a_warehouse_of_one_application_takes_a_second(tmp_path, old_code):
    sim = start(sdk_app_ids=APPS, messages_per_day=300, days=3, now=END, out_dir=tmp_path / "sim", rate_scale=0)
    warehouse, spool_dir = tmp_path / "w.duckdb", tmp_path / "spool"
    try:
        made = subprocess.run([sys.executable, "-c", OLD_SCRIPT, sim.url, str(warehouse), str(spool_dir), str(old_code)],
                              env={**os.environ, "PYTHONPATH": str(old_code)}, cwd=old_code, capture_output=True,
                              text=True)
        assert made.returncode == 0, made.stderr[-2000:]
        assert [f.sdk_app_id for f in Spool(spool_dir).pending()] == [None]  # the old name: no application
        old = subprocess.run([sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1]); "
                              "print([con.execute(f'select count(*) from {t}').fetchone()[0] for t in sys.argv[2:]])",
                              str(warehouse), *NAMING, *NAMING_LATER], capture_output=True, text=True, check=True)
        before = dict(zip(NAMING + NAMING_LATER, eval(old.stdout)))
        assert all(before.values()), before

        # The upgrade, killed (SIGKILL) before DuckDB checkpoints it: the file opens, upgraded.
        upgrade = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import os, signal, sys
            from pipelines.warehouse.db import connect, ensure_schema
            con = connect(sys.argv[1])
            con.execute("set checkpoint_threshold = '1GB'")
            ensure_schema(con, sys.argv[2])
            os.kill(os.getpid(), signal.SIGKILL)
            """), str(warehouse), APPS[0]], capture_output=True, text=True)
        assert upgrade.returncode == -signal.SIGKILL, upgrade.stderr[-2000:]
        assert warehouse.with_name("w.duckdb.wal").exists()  # the upgrade was in the log, not checkpointed

        with open_warehouse(warehouse, sdk_app_id=APPS[0]) as con:
            assert counts(con) == before
            for table in NAMING + NAMING_LATER:
                assert con.execute(f"select distinct sms_sdk_app_id from {table}").fetchall() == [(APPS[0],)], table
            # a column added with a default keeps none: a row written later must say its application
            assert con.execute("select count(*) from duckdb_columns() where column_name = 'sms_sdk_app_id' "
                               "and column_default is not null").fetchone() == (0,)
            # the hour is no longer the key of the statistics: the second application's hour goes beside
            assert con.execute("select count(*) from duckdb_constraints() where schema_name = 'raw' "
                               "and table_name = 'statistics_hourly' and constraint_type = 'PRIMARY KEY'").fetchone() == (0,)

        sim.advance(86400)
        spool = Spool(spool_dir)
        for app in APPS:
            with sim_client(sim, sdk_app_id=app) as client:
                for action in A.QUEUE_ACTIONS:
                    drain_queue(client, spool, action, workers=2)
                frame = fetch_statistics(client, DayRange(dt.date(2026, 11, 19), dt.date(2026, 11, 19),
                                                          zoneinfo.ZoneInfo("UTC"))).frame
                with open_warehouse(warehouse, sdk_app_id=APPS[0]) as con:
                    store_statistics(con, frame)
        with open_warehouse(warehouse, sdk_app_id=APPS[0]) as con:
            load_spool(con, spool, sdk_app_id=APPS[0])
            load_spool(con, spool, sdk_app_id=APPS[0])  # nothing left: nothing twice
            for app in APPS:
                truth = {r["SerialNo"] for r in map(receipt_fields, sim.state.due_receipts(sdk_app_id=app)) if r["SerialNo"]}
                stored = con.execute("select serial_no, count(*) from raw.send_status where sms_sdk_app_id = $app "
                                     "group by all", {"app": app}).fetchall()
                assert {s for s, _ in stored} == truth, app
                hours = con.execute("select count(*), count(distinct provider_hour) from raw.statistics_hourly "
                                    "where sms_sdk_app_id = $app", {"app": app}).fetchone()
                assert hours == (24, 24), app  # the first application's day re-pulled, not doubled
            assert con.execute("select count(*) from raw.batches where sms_sdk_app_id is null").fetchone() == (0,)
            assert con.execute("select count(*) from raw.gap_fill_searches").fetchone()[0] == before["raw.gap_fill_searches"]
    finally:
        sim.close()
