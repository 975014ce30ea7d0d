"""Daily partitions in a zone other than UTC, in a process whose own TZ is a third zone: every
message lands in its local send day, and rewriting a day touches nothing of its neighbours."""

import datetime as dt
import time
import zoneinfo

import pytest
from support import sim_client

from pipelines.ingest.drain import drain_queue
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.marts import rebuild
from pipelines.warehouse.sending_app import load_source_files
from pipelines.spool import Spool
from pipelines.days import DayRange
from pipelines.warehouse.staging import build_messages

PARTITION_ZONE = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture
def process_tz(monkeypatch):
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_messages_land_in_their_local_send_day(tmp_path, process_tz):
    now = time.time() - 3600
    with Simulator(SimulatorConfig(port=0, days=3, messages_per_day=500, seed=8, now=now, clock_runs=False,
                                   rate_scale=0, out_dir=tmp_path / "sim")) as sim:
        client = sim_client(sim)
        spool = Spool(tmp_path / "spool")
        drain_queue(client, spool, "PullSmsSendStatus")
        client.close()
        truth = [m for m in sim.state.truth_messages() if m["code"] == "Ok"]
    local_day = {m["serial_no"]: dt.datetime.fromtimestamp(m["send_time"], PARTITION_ZONE).date() for m in truth}
    days = sorted(set(local_day.values()))
    middle = DayRange(days[1], days[1], PARTITION_ZONE)
    whole = DayRange(days[0], days[-1], PARTITION_ZONE)
    with open_warehouse(tmp_path / "w.duckdb") as con:
        load_spool(con, spool)
        load_source_files(con, "sends", str(tmp_path / "sim" / "sends.ndjson"))
        build_messages(con, whole)
        rebuild(con, "marts.message_status", whole, attribution_days=7)
        before = con.execute("select * from marts.message_status order by serial_no").fetchall()
        build_messages(con, middle)
        rebuild(con, "marts.message_status", middle, attribution_days=7)
        after = con.execute("select * from marts.message_status order by serial_no").fetchall()
        ours = dict(con.execute("select serial_no, send_date from marts.message_status").fetchall())
    assert before == after
    assert ours == local_day
