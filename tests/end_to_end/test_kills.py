"""`smsledger sync` killed with SIGKILL inside a step that holds the warehouse pool: the next sync
releases the dead run and completes; a sync waiting for a live holder says whom it waits for and
stops on SIGTERM. Real processes, real signals, the simulator over loopback."""

import os
import signal
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from support import Running

from assets.options import WAREHOUSE_POOL
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("kills")
    home = root / "dagster"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n")
    config = SimulatorConfig(port=0, seed=5, days=3, messages_per_day=3000, out_dir=root / "sim",
                             now=time.time() - 3600, clock_runs=False, rate_scale=5)
    with Simulator(config) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_", "DAGSTER_"))
               and not k.lower().endswith("_proxy")}
        env.update({
            "SMSLEDGER_ENDPOINT": sim.url, "SMSLEDGER_WAREHOUSE": str(root / "w.duckdb"),
            "SMSLEDGER_SPOOL_DIR": str(root / "spool"), "SMSLEDGER_SENDS_PATH": str(root / "sim" / "sends.ndjson"),
            "SMSLEDGER_CONVERSIONS_PATH": str(root / "sim" / "conversions.ndjson"),
            "SMSLEDGER_START_DATE": "2026-01-01", "SMSLEDGER_RATE_LIMIT_SCALE": "5", "DAGSTER_HOME": str(home),
        })
        yield env, home, root


def pool_holders(home: Path) -> list[str]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        return [slot.run_id for slot in instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL).claimed_slots]


def wait_until_holding(sync: Running, home: Path, timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and sync.process.poll() is None:
        if pool_holders(home):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_a_sync_killed_in_a_pooled_step_never_blocks_the_next(setup):
    env, home, root = setup
    kills = 0
    for delay in (0.0, 1.5, 4.0):
        sync = Running(env, "sync")
        assert wait_until_holding(sync, home), sync.output()
        time.sleep(delay)
        # the slot is free between two pooled steps: kill only while a step holds it again
        if wait_until_holding(sync, home, timeout=60) and sync.process.poll() is None:
            sync.process.send_signal(signal.SIGKILL)
            kills += 1
        sync.finish(timeout=30)
    assert kills >= 2
    assert pool_holders(home), "a killed run should have left its slot behind"

    started = time.monotonic()
    after = Running(env, "sync")
    assert after.finish(timeout=300) == 0, after.output()
    assert "released the warehouse from run" in after.output()
    assert time.monotonic() - started < 240
    assert pool_holders(home) == []
    with duckdb.connect(str(root / "w.duckdb"), read_only=True) as con:
        rows, distinct = con.execute("select count(*), count(distinct record_key) from raw.send_status").fetchone()
        assert rows == distinct > 0
        assert con.execute("select count(*) from marts.message_status").fetchone()[0] > 0


@pytest.mark.slow
def test_a_waiting_sync_names_the_holder_and_stops_on_sigterm(setup):
    env, home, _ = setup
    holder = Running(env, "sync")
    assert wait_until_holding(holder, home), holder.output()
    waiter = Running(env, "sync")
    try:
        if not waiter.wait_for("waiting", timeout=60):
            pytest.skip("the first sync finished before the second had to wait; nothing to observe")
        assert "for the warehouse (pool duckdb_warehouse), held by run" in waiter.output()
        stopped_at = time.monotonic()
        waiter.process.send_signal(signal.SIGTERM)
        assert waiter.finish(timeout=30) == 130, waiter.output()
        assert time.monotonic() - stopped_at < 20
        assert "smsledger sync: stopped" in waiter.output()
    finally:
        for sync in (holder, waiter):
            if sync.process.poll() is None:
                sync.process.send_signal(signal.SIGKILL)
                sync.finish(timeout=30)
    last = Running(env, "sync")
    assert last.finish(timeout=300) == 0, last.output()
    assert pool_holders(home) == []
