"""Gap filling with two applications: a pull lost from the second application's queue is searched
with that application's by-number pulls only, brings back that application's records (the
simulator's truth says which), and the first application's run asks nothing."""

import time

from support import sim_client

from pipelines.ingest.drain import drain_queue
from pipelines.ingest.gapfill import run_gap_fill
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.spool import Spool
from pipelines.tencent import actions as A
from pipelines.tencent.client import RetryPolicy
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.sending_app import load_source_files

APPS = ("1400000000", "1400000111")
LIMIT = 50


def test_a_pull_lost_by_one_application_is_searched_by_that_application(tmp_path):
    sim = Simulator(SimulatorConfig(port=0, seed=5, days=3, messages_per_day=2000, out_dir=tmp_path / "sim",
                                    now=time.time() - 3600, clock_runs=False, rate_scale=0, sdk_app_ids=APPS)).start()
    clients = {app: sim_client(sim, sdk_app_id=app, retry=RetryPolicy(base_seconds=0.001)) for app in APPS}
    spool, path = Spool(tmp_path / "spool"), tmp_path / "w.duckdb"
    try:
        for app in APPS:
            drain_queue(clients[app], spool, A.PULL_SEND_STATUS, limit=LIMIT, workers=1, time_budget_seconds=0.05)
        sim.set_faults(f"{A.PULL_SEND_STATUS}:truncate=1")
        lost_pull = drain_queue(clients[APPS[1]], spool, A.PULL_SEND_STATUS, limit=LIMIT, workers=1,
                                max_consecutive_failures=1)
        sim.set_faults("")
        assert lost_pull.indeterminate == 1
        for app in APPS:
            drain_queue(clients[app], spool, A.PULL_SEND_STATUS, limit=LIMIT, workers=4)
        with open_warehouse(path) as con:
            load_source_files(con, "sends", str(tmp_path / "sim" / "sends.ndjson"))
            load_spool(con, spool)
        lost = [(h["sdk_app_id"], r) for h in sim.state.truth_handed_out()
                if h["action"] == A.PULL_SEND_STATUS and h["outcome"] == "lost" for r in h["records"]]
        assert len(lost) == LIMIT and {app for app, _ in lost} == {APPS[1]}
        with open_warehouse(path) as con:
            assert con.execute("select sms_sdk_app_id, reason from raw.gap_fill_searches").fetchall() == [] and \
                   con.execute("select sms_sdk_app_id from raw.batches where outcome = 'indeterminate'").fetchall() == [
                       (APPS[1],)]

        before = sim.service.stats.requests[A.PULL_SEND_STATUS_BY_NUMBER]
        first = run_gap_fill(lambda: open_warehouse(path), clients[APPS[0]], spool)
        assert first.calls == 0 and sim.service.stats.requests[A.PULL_SEND_STATUS_BY_NUMBER] == before
        second = run_gap_fill(lambda: open_warehouse(path), clients[APPS[1]], spool)
        assert 0 < second.calls <= 2 * LIMIT and second.lost_pulls_searched == 1
        with open_warehouse(path) as con:
            assert con.execute("select sms_sdk_app_id, outcome from raw.gap_fill_searches").fetchall() in (
                [(APPS[1], "complete")], [(APPS[1], "bounded")])
            back = con.execute("select sms_sdk_app_id, serial_no || '|' || report_status || '|' || user_receive_time "
                               "from raw.send_status where action = $a", {"a": A.PULL_SEND_STATUS_BY_NUMBER}).fetchall()
        lost_keys = {f'{r["SerialNo"]}|{r["ReportStatus"]}|{r["UserReceiveTime"]}' for _, r in lost}
        recovered = {key for _, key in back} & lost_keys
        assert recovered and {app for app, _ in back} == {APPS[1]}
        assert second.new_records >= len(recovered)
        # every number it asked received the second application's messages
        second_numbers = {m["phone_e164"] for m in sim.state.truth_messages(APPS[1])}
        with open_warehouse(path) as con:
            asked = {n for (n,) in con.execute("select phone_e164 from raw.gap_fill_calls").fetchall()}
        assert asked and asked <= second_numbers
    finally:
        for client in clients.values():
            client.close()
        sim.close()
