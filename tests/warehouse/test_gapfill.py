"""Gap filling recovers what broken queue pulls lost, asking only the numbers that can miss it."""

import datetime as dt
import time
import zoneinfo

from support import sim_client

from pipelines.ingest.drain import drain_queue
from pipelines.ingest.gapfill import fetch_gaps, plan_gap_fill
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.tencent.client import RetryPolicy
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.warehouse.sending_app import load_source_files
from pipelines.spool import Spool
from pipelines.days import DayRange


def test_replies_lost_in_broken_pulls_are_recovered(tmp_path):
    now = time.time() - 3600
    config = SimulatorConfig(port=0, seed=12, days=2, messages_per_day=1500, out_dir=tmp_path / "sim", now=now,
                             clock_runs=False, rate_scale=0, faults="PullSmsReplyStatus:reset=0.4,truncate=0.2")
    with Simulator(config) as sim:
        client = sim_client(sim, retry=RetryPolicy(base_seconds=0.001))
        spool = Spool(tmp_path / "spool")
        drain_queue(client, spool, "PullSmsSendStatus")
        report = drain_queue(client, spool, "PullSmsReplyStatus", limit=5, max_consecutive_failures=50)
        assert report.indeterminate > 0
        first = dt.datetime.fromtimestamp(now, dt.UTC).date() - dt.timedelta(days=2)
        days = DayRange(first, first + dt.timedelta(days=2), zoneinfo.ZoneInfo("UTC"))
        with open_warehouse(tmp_path / "w.duckdb") as con:
            load_source_files(con, "sends", str(tmp_path / "sim" / "sends.ndjson"))
            load_spool(con, spool)
            before = con.execute("select count(*) from raw.reply_status").fetchone()[0]
            gaps = fetch_gaps(client, spool, plan_gap_fill(con, days))
            load_spool(con, spool)
            got = {(p, t, c) for p, t, c in con.execute(
                "select phone_number, reply_time, reply_content from raw.reply_status").fetchall()}
        client.close()
        due = sim.state.due_replies()
        lost = {(r.recipient.phone_e164, r.reply_time, r.content) for h in sim.state.truth_handed_out()
                if h["action"] == "PullSmsReplyStatus" and h["outcome"] == "lost"
                for r in [next(x for x in due if (x.recipient.phone_e164, x.reply_time, x.content) ==
                               (rec["PhoneNumber"], rec["ReplyTime"], rec["ReplyContent"])) for rec in h["records"]]}
        numbers_with_messages = {m["phone_e164"] for m in sim.state.truth_messages()}
    assert lost and before < len(due)
    # lost replies from numbers we had delivered to come back (an unsolicited reply, or one long
    # after its message, is not looked for)
    recovered = {k for k in lost if k in got}
    assert len(recovered) >= 0.9 * len([k for k in lost if k[0] in numbers_with_messages])
    # only numbers that had a delivered message before a broken pull were asked
    assert 0 < gaps.reply_numbers_asked < len(numbers_with_messages)
