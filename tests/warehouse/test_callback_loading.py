"""Pushed callbacks in the warehouse: the documented examples load into raw with the right values;
a receipt or reply that arrives both by push and by pull is one row (whichever came first); a
repeated push is one row; bodies and items that cannot be mapped are quarantined with reasons; a
reply pushed to a receiver of several applications is stored without one, and staged as the
pulled copy when there is one, else with a null application for the marts to attribute."""

import datetime as dt
import random
import zoneinfo

import orjson
from support import APP, Api, start

from pipelines.ingest import callbacks
from pipelines.spool import Spool
from pipelines.tencent import actions as A
from pipelines.warehouse.loader import load_spool

PROVIDER_ZONE = "Asia/Shanghai"
STATUS_EXAMPLE = """[{"user_receive_time": "2015-10-17 08:03:04", "nationcode": "86", "mobile": "13xxxxxxxxx",
    "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功", "sid": "xxxxxxx"}]""".encode()
REPLY_EXAMPLE = """{"extend": "扩展码", "mobile": "13xxxxxxxxx", "nationcode": "86", "sign": "短信签名",
    "text": "用户回复的内容", "time": 1457336869}""".encode()


def as_status_push(record, zone=PROVIDER_ZONE):
    """A pulled receipt as Tencent pushes it (§6.1): local receive time, national number."""
    local = dt.datetime.fromtimestamp(record["UserReceiveTime"], zoneinfo.ZoneInfo(zone))
    return {"user_receive_time": local.strftime("%Y-%m-%d %H:%M:%S"), "nationcode": record["CountryCode"],
            "mobile": record["SubscriberNumber"], "report_status": record["ReportStatus"],
            "errmsg": record["Description"], "description": "a sentence about it", "sid": record["SerialNo"],
            "ext": record["SessionContext"]}


def as_reply_push(record):
    return {"extend": record["ExtendCode"], "mobile": record["SubscriberNumber"], "nationcode": record["CountryCode"],
            "sign": record["SignName"], "text": record["ReplyContent"], "time": record["ReplyTime"]}


def pull_page(action, records):
    return orjson.dumps({"Response": {A.RECORD_SET[action]: records, "RequestId": "req"}})


def chunks(items, size):
    return [items[i:i + size] for i in range(0, len(items), size)]


def test_the_documented_examples_load_into_raw_with_the_right_values(tmp_path, con):
    spool = Spool(tmp_path / "spool")
    spool.write(callbacks.STATUS, STATUS_EXAMPLE)
    spool.write(callbacks.REPLY, REPLY_EXAMPLE)
    report = load_spool(con, spool, provider_timezone=PROVIDER_ZONE)
    assert (report.batches, report.records, report.new_records, report.quarantined) == (2, 2, 2, 0)
    receipt = con.execute("""select serial_no, phone_number, country_code, subscriber_number, report_status, description,
                                    user_receive_time, session_context, extra_fields, action, request_id, record_key
                             from raw.send_status""").fetchall()
    assert receipt == [("xxxxxxx", "+8613xxxxxxxxx", "86", "13xxxxxxxxx", "SUCCESS", "DELIVRD",
                        1445040184,  # 2015-10-17 08:03:04 +08:00
                        None, '{"description":"用户短信送达成功"}', "CallbackSmsStatus", None,
                        "xxxxxxx|SUCCESS|1445040184")]
    reply = con.execute("""select phone_number, country_code, subscriber_number, sign_name, extend_code, reply_content,
                                  reply_time, extra_fields, action from raw.reply_status""").fetchall()
    assert reply == [("+8613xxxxxxxxx", "86", "13xxxxxxxxx", "短信签名", "扩展码", "用户回复的内容", 1457336869, None,
                      "CallbackSmsReply")]
    ledger = con.execute("select action, outcome, records, new_records from raw.batches order by action").fetchall()
    assert ledger == [("CallbackSmsReply", "ok", 1, 1, ), ("CallbackSmsStatus", "ok", 1, 1)]


# How a record arrives, and which arrivals come in the first and the second load.
WAYS = ("pull", "push", "pull then push", "push then pull")
PHASES = ({"pull": ("pull", "pull then push"), "push": ("push", "push then pull")},
          {"pull": ("push then pull",), "push": ("pull then push",)})


def pushes(action, records):
    """Push bodies as Tencent sends them: receipts in arrays of at most 100, replies one by one."""
    if action == callbacks.STATUS:
        return [orjson.dumps([as_status_push(r) for r in chunk]) for chunk in chunks(records, 100)]
    return [orjson.dumps(as_reply_push(r)) for r in records]


def test_a_record_pushed_and_pulled_is_one_row_whichever_came_first(tmp_path, warehouse_path):
    """Ground truth from the simulator's queues: every receipt and reply arrives by pull, by push,
    or both in either order, the second arrival in a later load; raw holds each once, with the
    values the pull has."""
    from pipelines.warehouse.db import open_warehouse

    with start(messages_per_day=200) as sim:
        api = Api(sim)
        receipts, replies = api.drain(A.PULL_SEND_STATUS), api.drain(A.PULL_REPLY_STATUS)
        api.close()
    assert len(receipts) > 500 and len(replies) > 5
    rng = random.Random(5)
    way = {id(r): rng.choice(WAYS) for r in receipts + replies}
    spool = Spool(tmp_path / "spool")
    for phase in PHASES:
        for records, pull_action, push_action in ((receipts, A.PULL_SEND_STATUS, callbacks.STATUS),
                                                  (replies, A.PULL_REPLY_STATUS, callbacks.REPLY)):
            for page in chunks([r for r in records if way[id(r)] in phase["pull"]], 100):
                spool.write(pull_action, pull_page(pull_action, page))
            for body in pushes(push_action, [r for r in records if way[id(r)] in phase["push"]]):
                spool.write(push_action, body, sdk_app_id=APP)  # as a receiver of one application spools them
        with open_warehouse(warehouse_path) as con:
            load_spool(con, spool, provider_timezone=PROVIDER_ZONE)
    with open_warehouse(warehouse_path) as con:
        stored = con.execute("""select serial_no, phone_number, country_code, subscriber_number, report_status,
                                       description, user_receive_time, session_context, action from raw.send_status""").fetchall()
        stored_replies = con.execute("""select phone_number, country_code, subscriber_number, sign_name, extend_code,
                                               reply_content, reply_time, action from raw.reply_status""").fetchall()
        quarantined = con.execute("select count(*) from raw.quarantine").fetchone()[0]
    fields = ["SerialNo", "PhoneNumber", "CountryCode", "SubscriberNumber", "ReportStatus", "Description",
              "UserReceiveTime", "SessionContext"]
    assert quarantined == 0
    assert sorted(row[:-1] for row in stored) == sorted(tuple(r[f] for f in fields) for r in receipts)
    assert {row[-1] for row in stored} == {A.PULL_SEND_STATUS, callbacks.STATUS}
    reply_fields = ["PhoneNumber", "CountryCode", "SubscriberNumber", "SignName", "ExtendCode", "ReplyContent", "ReplyTime"]
    assert sorted(row[:-1] for row in stored_replies) == sorted(tuple(r[f] for f in reply_fields) for r in replies)
    assert {row[-1] for row in stored_replies} == {A.PULL_REPLY_STATUS, callbacks.REPLY}


def test_a_repeated_push_is_one_row(tmp_path, con):
    """Tencent resends a push whose acknowledgement it did not get: a new batch, the same records."""
    spool = Spool(tmp_path / "spool")
    for _ in range(3):
        spool.write(callbacks.STATUS, STATUS_EXAMPLE)
        spool.write(callbacks.REPLY, REPLY_EXAMPLE)
    report = load_spool(con, spool, provider_timezone=PROVIDER_ZONE)
    assert (report.batches, report.records, report.new_records, report.duplicates) == (6, 6, 2, 4)
    assert con.execute("select (select count(*) from raw.send_status), (select count(*) from raw.reply_status)").fetchone() == (1, 1)


def test_bodies_and_items_that_cannot_be_mapped_are_quarantined_with_their_reason(tmp_path, con):
    spool = Spool(tmp_path / "spool")
    good = {"sid": "s1", "report_status": "SUCCESS", "user_receive_time": "2026-11-30 08:00:00", "errmsg": "DELIVRD"}
    spool.write(callbacks.STATUS, orjson.dumps([good, {**good, "sid": None}, {**good, "sid": "s2", "user_receive_time": "30/11/2026"},
                                                7, {**good, "sid": "s3", "report_status": 1}]))
    spool.write(callbacks.STATUS, b'{"not": "an array"}')
    spool.write(callbacks.REPLY, b"\xff\xfe garbage")
    spool.write(callbacks.REPLY, orjson.dumps({"mobile": "", "time": 1_790_000_000}))
    report = load_spool(con, spool, provider_timezone=PROVIDER_ZONE)
    rows = con.execute("select serial_no, report_status, extra_fields from raw.send_status order by serial_no").fetchall()
    assert rows == [("s1", "SUCCESS", None), ("s3", None, '{"ReportStatus":1}')]  # a mistyped value is kept aside
    quarantine = con.execute("select source, reason, record_index, payload from raw.quarantine order by batch_id, record_index").fetchall()
    assert [(s, r, i) for s, r, i, _ in quarantine] == [
        ("CallbackSmsStatus", "status callback item without sid", 1),
        ("CallbackSmsStatus", "user_receive_time '30/11/2026' is not YYYY-MM-DD HH:MM:SS", 2),
        ("CallbackSmsStatus", "status callback item is a JSON number, not an object", 3),
        ("CallbackSmsStatus", "status callback body is a JSON object, not an array", -1),
        ("CallbackSmsReply", quarantine[4][1], -1),
        ("CallbackSmsReply", "reply callback without mobile", 0),
    ]
    assert quarantine[4][1].startswith("callback body is not JSON")
    assert orjson.loads(quarantine[1][3])["user_receive_time"] == "30/11/2026"
    outcomes = con.execute("select action, outcome, records, quarantined from raw.batches order by batch_id").fetchall()
    assert outcomes == [("CallbackSmsStatus", "ok", 5, 3), ("CallbackSmsStatus", "unparseable", 0, 1),
                        ("CallbackSmsReply", "unparseable", 0, 1), ("CallbackSmsReply", "ok", 1, 1)]
    assert report.quarantined == 6 and report.errors == 2


def test_a_reply_pushed_without_an_application_is_staged_as_its_pulled_copy_or_unsaid(tmp_path, con):
    from pipelines.days import DayRange
    from pipelines.warehouse.staging import build_replies

    other = "1400000111"
    both = {"extend": "", "mobile": "13800000001", "nationcode": "86", "sign": "s", "text": "TD", "time": 1_795_000_000}
    pushed_only = {**both, "mobile": "13800000002", "text": "ok"}
    spool = Spool(tmp_path / "spool")
    for body in (both, pushed_only, pushed_only):  # the second push of one reply: Tencent's retry
        spool.write(callbacks.REPLY, orjson.dumps(body))  # a receiver of several applications: no application
    pulled = {"PhoneNumber": "+8613800000001", "CountryCode": "86", "SubscriberNumber": "13800000001", "SignName": "s",
              "ExtendCode": "", "ReplyContent": "TD", "ReplyTime": 1_795_000_000}
    spool.write(A.PULL_REPLY_STATUS, pull_page(A.PULL_REPLY_STATUS, [pulled]), sdk_app_id=other)
    load_spool(con, spool, provider_timezone=PROVIDER_ZONE)
    raw = con.execute("select subscriber_number, sms_sdk_app_id, action from raw.reply_status order by all").fetchall()
    assert raw == [("13800000001", "", callbacks.REPLY), ("13800000001", other, A.PULL_REPLY_STATUS),
                   ("13800000002", "", callbacks.REPLY)]
    assert con.execute("select distinct sms_sdk_app_id from raw.batches where action = $a",
                       {"a": callbacks.REPLY}).fetchall() == [(callbacks.UNSAID_APPLICATION,)]
    day = dt.datetime.fromtimestamp(1_795_000_000, dt.UTC).date()
    build_replies(con, DayRange(day, day, zoneinfo.ZoneInfo("UTC")))
    staged = con.execute("select phone_e164, sms_sdk_app_id, action from staging.replies order by all").fetchall()
    assert staged == [("+8613800000001", other, A.PULL_REPLY_STATUS), ("+8613800000002", None, callbacks.REPLY)]
