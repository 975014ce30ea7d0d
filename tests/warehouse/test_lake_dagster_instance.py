"""dagster.postgres.yaml, the instance beside a lake: a real PostgreSQL server accepts it, runs and
their events land there, and its queue, run monitoring and pool settings are the ones it says; a
run whose process is killed with SIGKILL is marked failed and frees its pool slot, with a real
dagster-daemon and code server. Against a real PostgreSQL server (tests/postgres_support.py)."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import postgres_support
import yaml

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


FREE_SLOTS_AFTER = 10  # seconds, for the test (the shipped file says 300)

# A job whose one step holds a slot of the warehouse's pool until it is killed. In-process
# executor: the step runs in the run's own process, the one the test kills.
HOLDER = """
import os, time
from pathlib import Path
import dagster as dg

@dg.op(pool="duckdb_warehouse")
def hold_the_warehouse():
    Path(os.environ["HOLDER_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(600)

@dg.job(executor_def=dg.in_process_executor)
def holder():
    hold_the_warehouse()

defs = dg.Definitions(jobs=[holder])
"""


def test_a_run_killed_with_sigkill_is_marked_failed_and_frees_its_pool_slot(postgres, tmp_path, monkeypatch):
    """dagster-daemon launches a queued run in a process of its own; that process is SIGKILLed
    while its step holds the pool's slot. The code server that started it reports the run failed,
    and the daemon's run monitoring frees the slot once the run has been over for
    free_slots_after_run_end_seconds (shortened here, and the poll interval, so the test does
    not wait 5 minutes; everything else is the shipped file)."""
    shipped = yaml.safe_load((ROOT / "dagster.postgres.yaml").read_text())
    assert shipped["run_monitoring"]["enabled"] and shipped["run_monitoring"]["free_slots_after_run_end_seconds"] > 0
    config = {**shipped, "run_monitoring": {**shipped["run_monitoring"], "poll_interval_seconds": 1,
                                            "free_slots_after_run_end_seconds": FREE_SLOTS_AFTER}}
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "holder.py").write_text(HOLDER)
    (tmp_path / "workspace.yaml").write_text("load_from:\n  - python_file:\n      relative_path: holder.py\n"
                                              "      location_name: holder\n")
    pid_file = tmp_path / "run.pid"
    env = {"DAGSTER_HOME": str(home), "DAGSTER_PG_HOST": postgres.host, "DAGSTER_PG_PORT": str(postgres.port),
           "DAGSTER_PG_USER": postgres.user, "DAGSTER_PG_DB": postgres.create_database("dagster"),
           "DAGSTER_PG_PASSWORD": postgres.password, "HOLDER_PID_FILE": str(pid_file)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    bin_dir = Path(sys.executable).parent
    log = (tmp_path / "daemon.log").open("w")
    # its own session: the daemon's code server and the run's process are stopped with it
    daemon = subprocess.Popen([str(bin_dir / "dagster-daemon"), "run", "-w", "workspace.yaml"], cwd=tmp_path,
                              env=os.environ.copy(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        launch = subprocess.run([str(bin_dir / "dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "holder"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert launch.returncode == 0, launch.stdout + launch.stderr
        _wait(lambda: pid_file.exists() and pid_file.read_text(), 300, "the run to start its step", tmp_path)
        with dg.DagsterInstance.get() as instance:
            (record,) = instance.get_run_records()
            run_id = record.dagster_run.run_id
            assert record.dagster_run.status == dg.DagsterRunStatus.STARTED
            slots = instance.event_log_storage.get_concurrency_info("duckdb_warehouse")
            assert slots.active_run_ids == {run_id} and slots.active_slot_count == 1

            os.kill(int(pid_file.read_text()), signal.SIGKILL)

            _wait(lambda: instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE, 120,
                  "the killed run to be marked failed", tmp_path)
            failed_at = time.monotonic()
            # still held by the dead run: nothing but run monitoring frees it, once the run has
            # been over for free_slots_after_run_end_seconds
            assert instance.event_log_storage.get_concurrency_info("duckdb_warehouse").active_run_ids == {run_id}
            _wait(lambda: instance.event_log_storage.get_concurrency_info("duckdb_warehouse").active_slot_count == 0,
                  120, "the killed run's slot to be freed", tmp_path)
            assert time.monotonic() - failed_at > FREE_SLOTS_AFTER / 2
            messages = [entry.message for entry in instance.all_logs(run_id)]
            assert any("was terminated by signal 9 (SIGKILL)" in message for message in messages), messages
        # the password stays in the environment: nothing under DAGSTER_HOME, nor the daemon's log, holds it
        for path in [*home.rglob("*"), tmp_path / "daemon.log"]:
            if path.is_file():
                assert postgres.password not in path.read_text(errors="replace"), path
    finally:
        os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=30)
        log.close()


def _wait(condition, seconds: float, what: str, tmp_path: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {seconds:.0f}s for {what}; daemon log:\n"
                                 + (tmp_path / "daemon.log").read_text()[-3000:])
        time.sleep(0.5)
