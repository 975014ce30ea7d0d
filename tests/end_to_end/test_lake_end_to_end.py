"""The end-to-end checks of test_end_to_end.py, again on a DuckLake whose catalog is a real
PostgreSQL server started for this module (tests/postgres_support.py) and whose data is a local
folder: the Dagster jobs drain, load, fill gaps, stage and build marts, and the marts match the
simulator's ground truth message by message. Then what only a lake does: backfills built by
several writers at once give the tables one writer gives, `smsledger sql` reads it and nothing
else, a backfill killed with SIGKILL leaves it readable and the next one completes, and the
catalog's password appears nowhere."""

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pytest
import postgres_support
from support import smsledger
# The checks of a DuckDB file, collected again here on a lake, in test_end_to_end.py's order
# (pytest runs them in the order imported): the late receipts last, as they advance the clock.
from test_end_to_end import (  # noqa: F401, I001
    synced_pipeline,
    test_every_message_matches_the_ground_truth,
    test_repeated_records_are_stored_once,
    test_replies_are_attributed_by_the_rule,
    test_delivery_metrics_match_the_ground_truth,
    test_conversion_and_reply_metrics_match_the_ground_truth,
    test_reconciliation_with_the_provider_is_exact,
    test_each_partition_of_the_range_run_carries_its_own_days_figures,
    test_rematerializing_gives_identical_tables_and_daily_runs_equal_the_backfill,
    test_late_receipts_move_messages_from_pending,
)

from pipelines.app.runner import run_days
from pipelines.config import LakeLocation
from pipelines.warehouse.db import connect

REPO = Path(__file__).resolve().parents[2]
TABLES = ["staging.sends", "staging.receipts", "staging.replies", "marts.message_status", "marts.replies",
          "marts.delivery_daily", "marts.conversion_daily", "marts.failure_reasons_daily",
          "marts.provider_statistics_hourly", "marts.reconciliation_daily"]

# When the provider's statistics were pulled: every run asks again, so it differs between runs.
_NOT_COMPARED = {"marts.provider_statistics_hourly": "exclude (pulled_at)"}

# The fixture of tests/postgres_support.py: one server for the module.
postgres = postgres_support.postgres


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, postgres):
    """The simulated week of test_end_to_end.py, synced into a new lake; PGPASSWORD holds the
    catalog's password, as a user gives it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PGPASSWORD", postgres.password)
        root = tmp_path_factory.mktemp("e2e-lake")
        location = LakeLocation(postgres.conninfo(postgres.create_database()), str(root / "lake") + "/")
        yield from synced_pipeline(root, warehouse=location)


def snapshot(pipeline) -> dict[str, list[tuple]]:
    con = connect(pipeline.warehouse, read_only=True)
    try:
        return {table: con.execute(f"select * {_NOT_COMPARED.get(table, '')} from {table} order by all").fetchall()
                for table in TABLES}
    finally:
        con.close()


def cli_env(pipeline, **overrides: str) -> dict[str, str]:
    """The variables that point `smsledger` at the pipeline's simulator, lake and instance."""
    settings = pipeline.settings
    return {
        "SMSLEDGER_ENDPOINT": settings.endpoint, "SMSLEDGER_WAREHOUSE": str(settings.warehouse),
        "SMSLEDGER_LAKE_DATA_PATH": settings.warehouse.data_path, "SMSLEDGER_SPOOL_DIR": str(settings.spool_dir),
        "SMSLEDGER_SENDS_PATH": settings.sends_path, "SMSLEDGER_CONVERSIONS_PATH": settings.conversions_path,
        "SMSLEDGER_START_DATE": settings.start_date.isoformat(), "SMSLEDGER_RATE_LIMIT_SCALE": "5",
        "DAGSTER_HOME": str(settings.dagster_home), "PGPASSWORD": os.environ["PGPASSWORD"], **overrides,
    }


def test_writers_building_parts_of_a_backfill_at_once_give_the_tables_of_one_run(pipeline):
    run_days(pipeline.settings, pipeline.first, pipeline.last, log=lambda _: None)
    one_writer = snapshot(pipeline)
    lines: list[str] = []
    outcome = run_days(pipeline.settings, pipeline.first, pipeline.last, writers=3, log=lines.append)
    assert snapshot(pipeline) == one_writer
    assert not outcome.errors, outcome.errors
    assert f"building {pipeline.first}..{pipeline.last} with 3 writers at once" in lines[0]
    assert any(line.startswith(f"built {pipeline.first}..{pipeline.last} (7 days, runs ") for line in lines), lines
    # the three parts ran at the same time: each started before any other ended
    with dg.DagsterInstance.from_config(str(pipeline.settings.dagster_home)) as instance:
        records = instance.get_run_records(limit=4)
    parts = sorted((r for r in records if len(r.dagster_run.asset_selection or ()) > 2), key=lambda r: r.start_time)
    assert len(parts) == 3 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
    assert max(r.start_time for r in parts) < min(r.end_time for r in parts)


def test_two_backfills_of_different_days_at_once_give_the_marts_of_one_after_the_other(pipeline):
    """Two `smsledger backfill` processes, of days far enough apart that neither reads the
    other's (a reply is attributed within 3 days): at once, then one after the other."""
    early = (pipeline.first, pipeline.first + dt.timedelta(days=1))
    late = (pipeline.last - dt.timedelta(days=1), pipeline.last)
    env = cli_env(pipeline)

    def backfill(days):
        return subprocess.Popen([sys.executable, "-m", "pipelines.app.cli", "backfill", "--skip-drain",
                                 "--start", days[0].isoformat(), "--end", days[1].isoformat()],
                                env={**_clean_env(), **env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)

    one_after_the_other = []
    for days in (early, late):
        done = backfill(days)
        out, _ = done.communicate(timeout=600)
        assert done.returncode == 0, out
        one_after_the_other.append(out)
    sequential = snapshot(pipeline)

    started = time.monotonic()
    both = [backfill(early), backfill(late)]
    outputs = [process.communicate(timeout=600)[0] for process in both]
    assert [process.returncode for process in both] == [0, 0], outputs
    assert snapshot(pipeline) == sequential
    # they did write at once: neither waited for the other's pool slot, and both ran together
    assert not any("waiting" in out for out in outputs), outputs
    with dg.DagsterInstance.from_config(str(pipeline.settings.dagster_home)) as instance:
        runs = [r for r in instance.get_run_records(limit=2)]
    assert max(r.start_time for r in runs) < min(r.end_time for r in runs)
    print(f"two backfills at once: {time.monotonic() - started:.1f}s")


def test_smsledger_sql_reads_the_lake_and_nothing_else(pipeline, tmp_path):
    env = cli_env(pipeline)
    done = smsledger("sql", "select count(*) from marts.message_status", "--format", "csv", env=env)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.splitlines()[1]) == len(snapshot(pipeline)["marts.message_status"]) > 0
    outside = tmp_path / "secret.csv"
    outside.write_text("a\n1\n")
    data_path = pipeline.warehouse.data_path
    refused = {
        "delete from marts.message_status": "refused: DELETE",
        "insert into marts.replies select * from marts.replies": "refused: INSERT",
        "create table marts.x as select 1": "refused: CREATE",
        f"copy (select 1) to '{data_path}stray.csv'": "refused: COPY",
        "call ducklake_expire_snapshots('lake', older_than => now())": "refused: CALL/CHECKPOINT",
        f"select * from read_csv('{outside}')": "file system operations are disabled",
        "attach 'dbname=postgres' as pg (type postgres)": "refused: ATTACH",
        "select 1; delete from marts.replies": "one statement at a time",
    }
    for query, cause in refused.items():
        done = smsledger("sql", query, env=env)
        assert done.returncode == 1 and cause in done.stderr, (query, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
    assert not os.path.exists(f"{data_path}stray.csv")
    assert snapshot(pipeline)["marts.message_status"]  # still there


def test_a_backfill_killed_mid_run_leaves_the_lake_readable_and_the_next_one_completes(pipeline):
    env = {**_clean_env(), **cli_env(pipeline)}
    before = snapshot(pipeline)
    command = [sys.executable, "-u", "-m", "pipelines.app.cli", "backfill", "--skip-drain",
               "--start", pipeline.first.isoformat(), "--end", pipeline.last.isoformat()]
    kills = 0
    for step in ("staging/messages", "marts/message_status", "marts/delivery_daily"):
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout), daemon=True)
        reader.start()
        # killed once the step before it is done, while it writes (its slice rewrite and commit)
        deadline = time.monotonic() + 300
        while not any(f"done    {step}" in line for line in lines) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=60)
        reader.join(timeout=5)
        # readable at once, and each table is one whole version of its days
        assert snapshot(pipeline) == before
    assert kills >= 2
    after = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "released the warehouse from run" in after.stdout
    assert snapshot(pipeline) == before


def test_the_catalogs_password_appears_nowhere(pipeline, postgres):
    password = postgres.password
    env = cli_env(pipeline)
    # a wrong password: one line that names the cause and shows no password, before anything runs
    wrong = "Wrong-Hunter2-" + password[:4]
    for args in (("sql", "select 1"), ("backfill", "--skip-drain", "--start", pipeline.first.isoformat(),
                                       "--end", pipeline.first.isoformat())):
        done = smsledger(*args, env={**env, "PGPASSWORD": wrong})
        assert done.returncode == 1
        message = done.stderr.strip()
        assert "password authentication failed" in message and "\n" not in message, done.stderr
        assert wrong not in done.stdout + done.stderr and password not in done.stdout + done.stderr
    # a password in the URI is refused without being repeated
    done = smsledger("sql", "select 1", env={**env, "SMSLEDGER_WAREHOUSE": f"{env['SMSLEDGER_WAREHOUSE']} password={wrong}"})
    assert done.returncode == 1 and "must not carry the password" in done.stderr and wrong not in done.stderr
    # nothing the runs wrote holds it: the Dagster instance (runs, events, logs), the lake's files,
    # its catalog in Postgres, the spool
    for folder in (pipeline.settings.dagster_home, Path(pipeline.warehouse.data_path), pipeline.settings.spool_dir):
        for path in Path(folder).rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path
                assert wrong.encode() not in path.read_bytes(), path
    database = dict(word.split("=", 1) for word in pipeline.warehouse.conninfo.split())["dbname"]
    dump = subprocess.run([str(postgres.bindir / "pg_dump"), "-d", pipeline.warehouse.conninfo, "--data-only"],
                          env=postgres.env(), capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0 and "ducklake_snapshot" in dump.stdout, dump.stderr
    assert password not in dump.stdout and wrong not in dump.stdout, database


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_", "DAGSTER_", "PG")) and not k.lower().endswith("_proxy")}


def test_the_demo_refuses_a_lake_that_holds_other_data(pipeline, tmp_path):
    env = {"SMSLEDGER_WAREHOUSE": str(pipeline.warehouse), "SMSLEDGER_LAKE_DATA_PATH": pipeline.warehouse.data_path,
           "PGPASSWORD": os.environ["PGPASSWORD"]}
    done = smsledger("demo", "--messages-per-day", "100", "--days", "2", env=env, cwd=tmp_path)
    assert done.returncode == 1
    assert "the demo builds an empty lake" in done.stderr and done.stderr.count("\n") == 1, done.stderr
    assert not (tmp_path / "data" / "demo-lake" / "spool").exists()


def test_make_lake_demo_builds_a_lake_and_two_backfills_at_once_land(tmp_path):
    """What `make lake-demo` runs, on a small week: its own PostgreSQL, the demo on the lake, two
    backfills at once, the lake read by `smsledger sql`; no password printed."""
    done = subprocess.run([sys.executable, "-m", "pipelines.app.lake_demo", "--messages-per-day", "300", "--days", "4"],
                          cwd=tmp_path, env=_clean_env(), capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "demo finished" in out and "both landed" in out, out[-3000:]
    backfills = [line for line in out.splitlines() if line.startswith("[backfill ") and " built " in line]
    assert len(backfills) == 2, out[-3000:]
    assert not any("waiting" in line for line in out.splitlines() if line.startswith("[backfill ")), out[-3000:]
    table = out[out.index("both landed"):]
    assert len([line for line in table.splitlines() if line.strip()[:4].isdigit() and "|" in line]) == 4, table
    assert "PGPASSWORD=" not in out and "password=" not in out
    assert list((tmp_path / "data" / "demo-lake" / "lake").rglob("*.parquet"))
