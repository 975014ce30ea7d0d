"""`smsledger receive` killed with SIGKILL, over and over, under a storm of pushes: every push it
acknowledged is in raw after a load, exactly once, and nothing else is.

The receiver is the real command in a subprocess; the pusher is ours: threads that push like
Tencent (status arrays of 1 to 100 receipts, single replies; a push that is not acknowledged is
sent twice more, then given up) and count the 200 answers."""

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time

import httpx
import orjson
import pytest
from test_receive import TOKEN, command_env, free_port, wait_listening

from pipelines.ingest import callbacks
from pipelines.spool import Spool
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool

KILLS = 22
PUSHERS = 6
ATTEMPTS = 3  # Tencent: a failed push is retried twice more


class Pusher:
    """Pushes until stopped; remembers every push sent, and those acknowledged with 200."""

    def __init__(self, url: str, seed: int):
        self.url = url
        self.rng = random.Random(seed)
        self.ids = itertools.count()
        self.lock = threading.Lock()
        self.sent: dict[int, tuple[str, list]] = {}
        self.acknowledged: set[int] = set()
        self.failed_attempts = 0  # refused connections, resets, answers cut off
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(i,)) for i in range(PUSHERS)]

    def start(self) -> "Pusher":
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def _push(self, push_id: int, rng: random.Random) -> tuple[str, bytes, list]:
        if rng.random() < 0.2:
            reply = {"extend": "", "mobile": f"185{push_id:08d}", "nationcode": "86", "sign": "s",
                     "text": f"reply {push_id}", "time": 1_796_000_000 + push_id}
            return "reply", orjson.dumps(reply), [reply]
        items = [{"user_receive_time": "2026-11-30 08:03:04", "nationcode": "86", "mobile": f"185{push_id:08d}",
                  "report_status": rng.choice(["SUCCESS", "FAIL"]), "errmsg": "DELIVRD", "description": "",
                  "sid": f"{push_id}:{i}"} for i in range(rng.randint(1, 100))]
        return "status", orjson.dumps(items), items

    def _run(self, worker: int) -> None:
        rng = random.Random(self.rng.random() + worker)
        with httpx.Client(trust_env=False, timeout=5) as client:
            while not self.stop.is_set():
                push_id = next(self.ids)
                kind, body, items = self._push(push_id, rng)
                with self.lock:
                    self.sent[push_id] = (kind, items)
                for _ in range(ATTEMPTS):
                    try:
                        response = client.post(f"{self.url}/callbacks/{TOKEN}/{kind}", content=body)
                        if response.status_code == 200 and response.content == callbacks.ACKNOWLEDGED:
                            with self.lock:
                                self.acknowledged.add(push_id)
                            break
                    except httpx.TransportError:
                        pass
                    with self.lock:
                        self.failed_attempts += 1
                    time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_under_a_push_storm_loses_nothing_acknowledged(tmp_path):
    rng = random.Random(2026)
    port = free_port()
    env = command_env(tmp_path, SMSLEDGER_CALLBACK_TOKEN=TOKEN, SMSLEDGER_CALLBACK_TIMEOUT_SECONDS="2")
    command = [sys.executable, "-m", "pipelines.app.cli", "receive", "--port", str(port)]

    def receiver() -> subprocess.Popen:
        process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_listening(port, process)
        return process

    pusher = Pusher(f"http://127.0.0.1:{port}", seed=7).start()
    kills = 0
    try:
        for _ in range(KILLS):
            process = receiver()
            time.sleep(rng.uniform(0.3, 1.0))
            process.send_signal(signal.SIGKILL)
            process.wait()
            process.stderr.close()
            kills += 1
        process = receiver()
        time.sleep(1.0)
    finally:
        pusher.finish()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    stopped_log = process.stderr.read().decode()
    assert "Traceback" not in stopped_log and TOKEN not in stopped_log

    assert kills >= 20
    acknowledged = pusher.acknowledged
    assert len(acknowledged) >= 200, f"only {len(acknowledged)} pushes acknowledged: the storm was too weak"
    assert pusher.failed_attempts > 0  # the kills did interrupt pushes
    spool = Spool(tmp_path / "spool")
    with open_warehouse(tmp_path / "w.duckdb") as con:
        report = load_spool(con, spool)
        receipts = [k for (k,) in con.execute("select serial_no from raw.send_status").fetchall()]
        replies = [t for (t,) in con.execute("select reply_content from raw.reply_status").fetchall()]
        keys = con.execute("""select count(*), count(distinct record_key) from raw.send_status
                              union all select count(*), count(distinct record_key) from raw.reply_status""").fetchall()
        quarantined = con.execute("select count(*) from raw.quarantine").fetchone()[0]
    assert quarantined == 0 and report.errors == 0
    assert all(total == distinct for total, distinct in keys)  # nothing twice
    sent_receipts = {item["sid"] for kind, items in pusher.sent.values() if kind == "status" for item in items}
    sent_replies = {item["text"] for kind, items in pusher.sent.values() if kind == "reply" for item in items}
    acked_receipts = {item["sid"] for i in acknowledged if pusher.sent[i][0] == "status" for item in pusher.sent[i][1]}
    acked_replies = {item["text"] for i in acknowledged if pusher.sent[i][0] == "reply" for item in pusher.sent[i][1]}
    # every acknowledged record is there, exactly once; nothing that was not pushed is
    assert acked_receipts <= set(receipts) <= sent_receipts and len(receipts) == len(set(receipts))
    assert acked_replies <= set(replies) <= sent_replies and len(replies) == len(set(replies))
    # the temp files of killed writers are gone, and every spooled file was loaded
    assert not os.listdir(spool.tmp) and not list(spool.pending())
