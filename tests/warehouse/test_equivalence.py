"""Issue 10: the faster load and staging keep the table contents the pipeline had before them.

A 20k-receipt input (benchmarks/receipts.py: dirty numbers, times in milliseconds and zero,
orphan receipts, failed sends, a sends log and conversions) with more dirt added here (repeated
pages across two loads, receipts without SerialNo or of the wrong type, error and unparseable
responses, an indeterminate pull, replies, status and reply pushes, bad sends-log and conversion
lines) goes through tests/warehouse/equivalence_run.py twice, each in its own process: with the
code of BASE_COMMIT (extracted from git) and with the code under test. Every raw, staging and mart
table of the base must then hold exactly the same rows in ours: `EXCEPT ALL` empty both ways.

Columns excluded: those that record when a row was loaded (LOAD_TIME_COLUMNS). Columns ours has
and the base had not are not compared (another change may add some, e.g. an application id).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tarfile
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import orjson
import pytest

from benchmarks.receipts import generate
from pipelines.spool import Spool
from pipelines.tencent import actions as A

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("equivalence_run.py")
BASE_COMMIT = "5140977"  # main before issue 10's changes: "today's" code
LOAD_TIME_COLUMNS = {"loaded_at", "quarantined_at", "registered_at", "called_at"}
_SHANGHAI = ZoneInfo("Asia/Shanghai")


def _page(action: str, records: list, request_id: str) -> bytes:
    return orjson.dumps({"Response": {A.RECORD_SET[action]: records, "RequestId": request_id}})


def build_input(root: Path) -> None:
    """The generated 20k receipts plus the dirt the generator does not make."""
    generated = root / "generated"
    generate(generated, 20_000, days=7, seed=11, log=lambda message: None)
    shutil.move(generated / "spool", root / "spool_1")
    (root / "sends").mkdir()
    for path in sorted((generated / "sends").iterdir()):
        shutil.move(path, root / "sends" / path.name)
    (root / "conversions").mkdir()
    shutil.move(generated / "conversions.ndjson", root / "conversions" / "conversions.ndjson")

    pages = sorted((root / "spool_1" / "ready").iterdir())
    receipts = [r for p in pages[:40] for r in orjson.loads(p.read_bytes())["Response"]["PullSmsSendStatusSet"]]
    later = int(dt.datetime(2026, 11, 2, tzinfo=dt.UTC).timestamp()) * 10**9
    spool = Spool(root / "spool_2")

    def write(action: str, body: bytes, offset: int, kind: str = "json") -> None:
        spool.write(action, body, pulled_at_ns=later + offset * 10**9, kind=kind)

    # A whole page again, and receipts again with their time in milliseconds: duplicates.
    write(A.PULL_SEND_STATUS, pages[3].read_bytes(), 1)
    write(A.PULL_SEND_STATUS, _page(A.PULL_SEND_STATUS, [{**r, "UserReceiveTime": r["UserReceiveTime"] * 1000}
                                                         for r in receipts[500:560] if r["UserReceiveTime"]], "r2"), 2)
    # Receipts that cannot be keyed or that carry odd values, and a record that is not an object.
    odd = [{**receipts[0], "SerialNo": ""}, {**receipts[1], "SerialNo": None},
           {**receipts[2], "UserReceiveTime": "soon", "SerialNo": "odd:1"},
           {**receipts[3], "UserReceiveTime": 2**63 + 5, "SerialNo": "odd:2"},
           {**receipts[4], "Fresh": {"a": 1}, "SerialNo": "odd:3"},
           {**receipts[5], "UserReceiveTime": -5, "SerialNo": "odd:4"},
           {**receipts[6], "UserReceiveTime": None, "SerialNo": "odd:5"},
           "junk", 17]
    write(A.PULL_SEND_STATUS, _page(A.PULL_SEND_STATUS, odd, "r3"), 3)
    write(A.PULL_SEND_STATUS, orjson.dumps({"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"},
                                                         "RequestId": "r4"}}), 4)
    write(A.PULL_SEND_STATUS, b"<html>bad gateway</html>", 5)
    write(A.PULL_SEND_STATUS, orjson.dumps({"failure": "ReadTimeout", "limit": 100, "workers": 4, "seconds": 2.5}), 6,
          kind="indeterminate")
    # Replies to delivered numbers (some opt-outs), repeated, and dirty ones.
    delivered = [r for r in receipts if r["ReportStatus"] == "SUCCESS" and 0 < r["UserReceiveTime"] < 10**11]
    replies = []
    for i, r in enumerate(delivered[:300]):
        replies.append({"PhoneNumber": r["PhoneNumber"], "CountryCode": r["CountryCode"],
                        "SubscriberNumber": r["SubscriberNumber"], "SignName": ["小账本", "", "SmsLedger"][i % 3],
                        "ExtendCode": "", "ReplyContent": ["好的", "退订。", "STOP!", "td", "谢谢"][i % 5],
                        "ReplyTime": r["UserReceiveTime"] + 60 * (i % 50)})
    replies[7]["ReplyTime"] *= 1000
    replies[8]["ReplyTime"] = 0
    replies[9].update(PhoneNumber="", SubscriberNumber="")
    replies.append(replies[10])
    write(A.PULL_REPLY_STATUS, _page(A.PULL_REPLY_STATUS, replies[:150], "r5"), 7)
    write(A.PULL_REPLY_STATUS_BY_NUMBER, _page(A.PULL_REPLY_STATUS_BY_NUMBER, replies[140:], "r6"), 8)

    # Pushes: receipts pulled already (their channels), new ones, one without sid, and a reply.
    def pushed(r: dict, **extra) -> dict:
        local = dt.datetime.fromtimestamp(r["UserReceiveTime"], _SHANGHAI).strftime("%Y-%m-%d %H:%M:%S")
        return {"user_receive_time": local, "nationcode": r["CountryCode"], "mobile": r["SubscriberNumber"],
                "report_status": r["ReportStatus"], "errmsg": r["Description"], "description": "用户短信接收成功",
                "sid": r["SerialNo"], "ext": r["SessionContext"], **extra}

    status_push = [pushed(r) for r in delivered[300:340]] + [pushed(delivered[341], sid="push:1"), pushed(delivered[342], sid="")]
    write("CallbackSmsStatus", orjson.dumps(status_push), 9)
    write("CallbackSmsStatus", orjson.dumps(status_push[:10]), 10)
    write("CallbackSmsStatus", b'{"not": "an array"}', 11)
    r = delivered[400]
    write("CallbackSmsReply", orjson.dumps({"extend": "", "mobile": r["SubscriberNumber"], "nationcode": r["CountryCode"],
                                            "sign": "小账本", "text": "退订", "time": r["UserReceiveTime"] + 30}), 12)

    # The sends log and conversions: a rotated copy overlapping the log, bad lines, odd values.
    first_day = sorted((root / "sends").iterdir())[0]
    lines = first_day.read_bytes().splitlines(keepends=True)
    extra = lines[:200] + [b"not json\n", b'{"SerialNo": "x:1", "Fee": "one", "SendTime": 1792000000}\n',
                           b'{"SerialNo": "x:2", "PhoneNumber": "+8618500000000", "Code": "Ok", "SendTime": 1792000000000}\n',
                           b'{"SerialNo": "x:3", "PhoneNumber": 8618500000001, "Code": "Ok", "SendTime": 1792000100}\n',
                           b'{"SerialNo": "x:4", "PhoneNumber": "+8618500000002", "Code": "Ok"}\n']
    (root / "sends" / "sends.ndjson.1").write_bytes(b"".join(extra))
    conversions = root / "conversions" / "conversions.ndjson"
    with conversions.open("ab") as f:
        f.write(b'{"SerialNo": "x:2", "ConversionTime": "later"}\n{"SerialNo": "x:2", "ConversionTime": 1792000500}\n')
    (root / "statistics.sql").write_text(
        "insert into raw.statistics_hourly (provider_hour, hour, fee_count, request_count, request_success_count, "
        "callback_count, callback_success_count, callback_fail_count, pulled_at) "
        "select strftime(h at time zone 'Asia/Shanghai', '%Y%m%d%H'), h, 100, 100, 98, 97, 92, 5, "
        "timestamptz '2026-11-02 00:00:00+00' "
        "from unnest(generate_series(timestamptz '2026-10-24 16:00:00+00', timestamptz '2026-11-01 15:00:00+00', "
        "interval 1 hour)) as t(h);\n")


def _base_tree(dest: Path) -> Path:
    """The base commit's `pipelines` package, with sql/ where the installed package maps it."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", BASE_COMMIT, "pipelines", "sql"],
                                 capture_output=True, check=True, timeout=120).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"needs the git history with commit {BASE_COMMIT} ({exc})")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    shutil.move(dest / "sql", dest / "pipelines" / "sql")
    return dest


def _run(code_root: Path, pristine: Path, work: Path, out: Path) -> None:
    """Run the path on a fresh copy of the input at the same place (file names are stored)."""
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(pristine, work / "input")
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    proc = subprocess.run([sys.executable, str(RUNNER), str(work / "input"), str(work / "warehouse.duckdb"), str(out)],
                          env=env, cwd=code_root, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]


def test_every_table_holds_the_rows_todays_code_gives(tmp_path):
    pristine = tmp_path / "pristine"
    pristine.mkdir()
    build_input(pristine)
    base = _base_tree(tmp_path / "base")
    _run(base, pristine, tmp_path / "work", tmp_path / "out_base")
    _run(REPO, pristine, tmp_path / "work", tmp_path / "out_ours")

    con = duckdb.connect()
    base_tables = sorted(p.stem for p in (tmp_path / "out_base").glob("*.parquet"))
    ours = {p.stem for p in (tmp_path / "out_ours").glob("*.parquet")}
    assert set(base_tables) <= ours, f"missing in ours: {set(base_tables) - ours}"
    differences = {}
    nonempty = 0
    for table in base_tables:
        a, b = f"'{tmp_path / 'out_base' / table}.parquet'", f"'{tmp_path / 'out_ours' / table}.parquet'"
        columns = [c for (c, *_) in con.execute(f"describe select * from {a}").fetchall()
                   if c not in LOAD_TIME_COLUMNS]
        cols = ", ".join(f'"{c}"' for c in columns)
        only_base = con.execute(f"select count(*) from (select {cols} from {a} except all select {cols} from {b})").fetchone()[0]
        only_ours = con.execute(f"select count(*) from (select {cols} from {b} except all select {cols} from {a})").fetchone()[0]
        rows = con.execute(f"select count(*) from {a}").fetchone()[0]
        nonempty += rows > 0
        if only_base or only_ours:
            differences[table] = (rows, only_base, only_ours)
    assert not differences, f"(rows of base, only in base, only in ours) per table: {differences}"
    # the comparison means something only if the input reached every layer
    assert nonempty >= 18, f"only {nonempty} of {len(base_tables)} tables hold rows"
