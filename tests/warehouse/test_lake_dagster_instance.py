"""dagster.postgres.yaml, the instance beside a lake: a real PostgreSQL server accepts it, runs and
their events land there, and its queue, run monitoring and pool settings are the ones it says.
Against a real PostgreSQL server (tests/postgres_support.py)."""

import shutil
from pathlib import Path

import dagster as dg
import postgres_support

ROOT = Path(__file__).resolve().parents[2]

# The fixtures of tests/postgres_support.py, visible to this module's tests.
postgres = postgres_support.postgres



@dg.asset(pool="duckdb_warehouse")
def answer() -> int:
    return 42


def test_the_postgres_instance_stores_runs_and_events_in_postgres(postgres, tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.postgres.yaml", home / "dagster.yaml")
    database = postgres.create_database("dagster")
    for name, value in {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": postgres.host, "DAGSTER_PG_PORT": str(postgres.port),
                        "DAGSTER_PG_USER": postgres.user, "DAGSTER_PG_DB": database,
                        "DAGSTER_PG_PASSWORD": postgres.password}.items():
        monkeypatch.setenv(name, value)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        assert instance.run_monitoring_enabled
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 4
        result = dg.materialize([answer], instance=instance)
        assert result.success
        assert instance.event_log_storage.get_concurrency_info("duckdb_warehouse").slot_count == 2
    # what Postgres holds: the run, succeeded, and its events
    assert postgres.psql("select status from runs", database) == "SUCCESS"
    assert int(postgres.psql("select count(*) from event_logs", database)) > 5
    # the password is the environment's only: nothing written under DAGSTER_HOME carries it
    for path in home.rglob("*"):
        if path.is_file():
            assert postgres.password not in path.read_text(errors="replace"), path
