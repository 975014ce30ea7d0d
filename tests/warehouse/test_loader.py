"""Spool and loader: durable files, one ledger row per batch, idempotent loads, quarantine."""

import os

import orjson

from pipelines.tencent import actions as A
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.spool import INDETERMINATE, Spool


def receipt(serial, t=1_790_000_000, status="SUCCESS", **extra):
    return {"Description": "DELIVRD" if status == "SUCCESS" else "UNDELIV", "CountryCode": "86",
            "SubscriberNumber": "18501234444", "ReportStatus": status, "PhoneNumber": "+8618501234444",
            "SerialNo": serial, "UserReceiveTime": t, "SessionContext": "", **extra}


def page(action, records, request_id="req"):
    return orjson.dumps({"Response": {A.RECORD_SET[action]: records, "RequestId": request_id}})


def counts(path):
    with open_warehouse(path) as con:
        return con.execute("select (select count(*) from raw.send_status), (select count(*) from raw.reply_status), "
                           "(select count(*) from raw.batches), (select count(*) from raw.quarantine)").fetchone()


def test_loading_is_idempotent_and_repeated_records_count_once(tmp_path, warehouse_path):
    spool = Spool(tmp_path / "spool")
    spool.write(A.PULL_SEND_STATUS, page(A.PULL_SEND_STATUS, [receipt("a"), receipt("b"), receipt("a")]))
    # the same receipt again later, with its time in milliseconds (a dirty record)
    spool.write(A.PULL_SEND_STATUS, page(A.PULL_SEND_STATUS, [receipt("b", t=1_790_000_000_000), receipt("c")]))
    with open_warehouse(warehouse_path) as con:
        report = load_spool(con, spool)
    assert (report.records, report.new_records, report.duplicates) == (5, 3, 2)
    assert counts(warehouse_path) == (3, 0, 2, 0)
    assert list(spool.pending()) == []
    with open_warehouse(warehouse_path) as con:
        assert load_spool(con, spool).batches == 0
    assert counts(warehouse_path) == (3, 0, 2, 0)


def test_a_batch_already_in_the_ledger_is_skipped(tmp_path, warehouse_path):
    """A crash after the commit but before the file was removed: the file is loaded again."""
    spool = Spool(tmp_path / "spool")
    spooled = spool.write(A.PULL_SEND_STATUS, page(A.PULL_SEND_STATUS, [receipt("a")]))
    data = spooled.path.read_bytes()
    with open_warehouse(warehouse_path) as con:
        load_spool(con, spool)
    spooled.path.write_bytes(data)  # the file is back, as if never removed
    with open_warehouse(warehouse_path) as con:
        report = load_spool(con, spool)
    assert report.skipped_batches == 1 and report.batches == 0
    assert counts(warehouse_path) == (1, 0, 1, 0)


def test_unkeyable_and_unreadable_records_are_quarantined_with_reasons(tmp_path, warehouse_path):
    spool = Spool(tmp_path / "spool")
    spool.write(A.PULL_SEND_STATUS, page(A.PULL_SEND_STATUS, [receipt(""), receipt("ok", ExtraFoo=1), "junk"]))
    spool.write(A.PULL_REPLY_STATUS, page(A.PULL_REPLY_STATUS, [
        {"PhoneNumber": "", "SubscriberNumber": "", "CountryCode": "", "SignName": "s", "ReplyContent": "x", "ReplyTime": 1_790_000_000, "ExtendCode": ""},
        {"PhoneNumber": "+8618501234444", "CountryCode": "86", "SubscriberNumber": "18501234444", "SignName": "s", "ReplyContent": "TD", "ReplyTime": 0, "ExtendCode": ""},
        {"PhoneNumber": "+8618501234444", "CountryCode": "86", "SubscriberNumber": "18501234444", "SignName": "s", "ReplyContent": "TD", "ReplyTime": 1_790_000_000, "ExtendCode": ""},
    ]))
    spool.write(A.PULL_SEND_STATUS, b"<html>502 Bad Gateway</html>")
    spool.write(A.PULL_SEND_STATUS, b"timed out", kind=INDETERMINATE)
    with open_warehouse(warehouse_path) as con:
        report = load_spool(con, spool)
        reasons = sorted(r for (r,) in con.execute("select reason from raw.quarantine").fetchall())
        extra = con.execute("select extra_fields from raw.send_status where serial_no = 'ok'").fetchone()[0]
        outcomes = sorted(o for (o,) in con.execute("select outcome from raw.batches").fetchall())
    assert report.indeterminate == 1 and report.quarantined == 5
    assert reasons[0].startswith("receipt without SerialNo")
    assert "record is not a JSON object" in reasons
    assert "reply without a phone number" in reasons and "reply without a usable ReplyTime" in reasons
    assert any(r.startswith("response is not the API's JSON envelope") for r in reasons)
    assert orjson.loads(extra) == {"ExtraFoo": 1}
    assert outcomes == ["indeterminate", "ok", "ok", "unparseable"]


def test_error_responses_are_recorded_in_the_ledger(tmp_path, warehouse_path):
    spool = Spool(tmp_path / "spool")
    spool.write(A.PULL_SEND_STATUS, orjson.dumps({"Response": {"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}, "RequestId": "r1"}}))
    with open_warehouse(warehouse_path) as con:
        report = load_spool(con, spool)
        row = con.execute("select outcome, error_code, request_id from raw.batches").fetchone()
    assert report.error_codes == {"RequestLimitExceeded": 1}
    assert row == ("error", "RequestLimitExceeded", "r1")


def test_spool_leaves_no_partial_files(tmp_path):
    spool = Spool(tmp_path / "spool")
    spooled = spool.write(A.PULL_SEND_STATUS, b"{}")
    assert spooled.path.parent == spool.ready and list(spool.tmp.iterdir()) == []
    (spool.ready / "not-ours.txt").write_text("x")
    assert [f.batch_id for f in spool.pending()] == [spooled.batch_id]


def test_the_loader_removes_temp_files_of_dead_writers_only(tmp_path, warehouse_path):
    """A writer killed between its temp file and the rename leaves the file behind; the next load
    removes it, while a live writer's temp file stays."""
    import subprocess
    import sys

    spool = Spool(tmp_path / "spool")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stray = spool.tmp / f"{dead.stdout.strip()}.00000000000000000001.PullSmsSendStatus.aa.json"
    live = spool.tmp / f"{os.getpid()}.00000000000000000002.PullSmsSendStatus.bb.json"
    stray.write_bytes(b'{"Resp')
    live.write_bytes(b'{"Resp')
    with open_warehouse(warehouse_path) as con:
        load_spool(con, spool)
    assert not stray.exists() and live.exists()
