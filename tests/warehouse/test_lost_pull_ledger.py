"""The ledger keeps what bounds an indeterminate pull's loss (its Limit, its drain's workers, how
long it ran), and warehouses made before those columns keep working, even when killed mid-upgrade."""

import os
import signal
import subprocess
import sys
import textwrap

import duckdb
from support import start, sim_client

from pipelines.ingest.drain import drain_queue
from pipelines.spool import INDETERMINATE, Spool
from pipelines.tencent import actions as A
from pipelines.tencent.client import RetryPolicy
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool


def test_an_indeterminate_pull_records_its_limit_workers_and_seconds(tmp_path, warehouse_path):
    spool = Spool(tmp_path / "spool")
    with start(faults="PullSmsSendStatus:truncate=1") as sim, sim_client(sim, retry=RetryPolicy(base_seconds=0.001)) as client:
        drain_queue(client, spool, A.PULL_SEND_STATUS, limit=7, workers=3, max_consecutive_failures=1)
    spool.write(A.PULL_REPLY_STATUS, b"timed out (ReadTimeout)", kind=INDETERMINATE)  # a marker of an older version
    with open_warehouse(warehouse_path) as con:
        load_spool(con, spool)
        rows = con.execute("select action, error_message, pull_limit, pull_workers, pull_seconds from raw.batches "
                           "where outcome = 'indeterminate' order by action").fetchall()
    failed = [row[1:] for row in rows if row[0] == A.PULL_SEND_STATUS]
    assert 1 <= len(failed) <= 3  # the workers' pulls in flight when the first failure stopped the drain
    assert all(message.startswith("RemoteProtocolError") and (limit, workers) == (7, 3) and seconds > 0
               for message, limit, workers, seconds in failed)
    assert [row[1:] for row in rows if row[0] == A.PULL_REPLY_STATUS] == [("timed out (ReadTimeout)", None, None, None)]


OLD_LEDGER = """
    create schema raw;
    create table raw.batches (batch_id varchar primary key, action varchar not null, pulled_at timestamptz not null,
        request_id varchar, outcome varchar not null, error_code varchar, error_message varchar,
        records integer not null, new_records integer not null, quarantined integer not null,
        loaded_at timestamptz not null default current_timestamp);
    insert into raw.batches (batch_id, action, pulled_at, outcome, error_message, records, new_records, quarantined)
    values ('b1', 'PullSmsSendStatus', now(), 'indeterminate', 'timed out', 0, 0, 0);
"""

# Open the old warehouse (which upgrades it), write to the ledger, and die by SIGKILL before any
# checkpoint: what the next process finds is what the write-ahead log replays.
OPEN_AND_DIE = textwrap.dedent("""
    import os, signal, sys
    from pipelines.warehouse.db import connect, ensure_schema
    con = connect(sys.argv[1])
    ensure_schema(con)
    con.execute("insert into raw.batches (batch_id, action, pulled_at, outcome, records, new_records, quarantined, "
                "pull_limit) values ('b2', 'PullSmsSendStatus', now(), 'indeterminate', 0, 0, 0, 20)")
    os.kill(os.getpid(), signal.SIGKILL)
""")


def test_a_ledger_made_before_the_pull_columns_is_upgraded_and_survives_a_kill(warehouse_path):
    con = duckdb.connect(str(warehouse_path))
    con.execute(OLD_LEDGER)
    con.close()
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    died = subprocess.run([sys.executable, "-c", OPEN_AND_DIE, str(warehouse_path)], env=env, capture_output=True)
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    assert os.path.exists(f"{warehouse_path}.wal")  # nothing was checkpointed: the log is replayed

    with open_warehouse(warehouse_path) as con:
        rows = con.execute("select batch_id, error_message, pull_limit, loaded_at is not null from raw.batches "
                           "order by batch_id").fetchall()
        assert rows == [("b1", "timed out", None, True), ("b2", None, 20, True)]
        # the rebuilt ledger keeps its key
        duplicate = "insert into raw.batches (batch_id, action, pulled_at, outcome, records, new_records, quarantined) " \
                    "values ('b1', 'PullSmsSendStatus', now(), 'ok', 0, 0, 0)"
        try:
            con.execute(duplicate)
            raise AssertionError("a batch id went in twice")
        except duckdb.ConstraintException:
            pass
