"""Push callbacks with several applications, through `smsledger receive` and the Dagster jobs,
against a simulator of two that pushes each application's receipts to its own status URL
(`/status/<SmsSdkAppId>`) and every reply to the account's one reply URL. Twice: with the pushed
records also in the pull queues (each receipt and reply arrives both ways), and with the pushes
taking them (the pull queues hand out nothing, so the replies' application comes only from the
attribution rule). Compared with the simulator's ground truth per application: each
application's receipts in raw and in the marts, one row per record whichever ways it came, each
reply under the application of the message it answers; and a status URL naming an application
the receiver does not serve is refused, storing nothing."""

import dataclasses
import datetime as dt

import httpx
import orjson
import pytest
from support import expected_delivery, pipeline_settings, query, start, wait_for_pushes

from pipelines.app.demo import DEMO_RATE_SCALE
from pipelines.app.receive import Receiver
from pipelines.app.runner import run_days, run_drain
from pipelines.config import Settings
from pipelines.ingest import callbacks
from pipelines.simulator.server import Simulator
from pipelines.spool import Spool

APPS = ("1400000000", "1400000111")
TOKEN = "tok_c2V2ZXJhbC1hcHBzLXB1c2hlZA"
END = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
DAYS = 2
FIRST, LAST = (END - dt.timedelta(days=DAYS)).date(), (END - dt.timedelta(days=1)).date()
ATTRIBUTION_SECONDS = 72 * 3600  # marts/replies: a reply answers a message sent in the 72 hours before it


@dataclasses.dataclass
class Pushed:
    sim: Simulator
    receiver: Receiver
    settings: Settings
    pushes: list[dict]
    also_queued: bool
    errors: list[str]


@pytest.fixture(scope="module", params=[True, False], ids=["pushed-also-queued", "pushes-take-the-records"])
def pushed(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("push-applications")
    receiver = Receiver(Settings(secret_id="", secret_key="", spool_dir=root / "spool", callback_token=TOKEN,
                                 sdk_app_ids=APPS)).start()
    sim = start(sdk_app_ids=APPS, messages_per_day=300, days=DAYS, now=END.timestamp(), out_dir=root / "sim",
                rate_scale=DEMO_RATE_SCALE, callback_url=f"{receiver.url}/callbacks/{TOKEN}",
                callback_retry_seconds=0.2, pushed_also_queued=request.param)
    try:
        pushes = wait_for_pushes(sim)
        settings = pipeline_settings(root, sim, FIRST, sdk_app_ids=APPS)
        assert settings.spool_dir == root / "spool"  # the receiver's spool is the one the drain loads
        drained = run_drain(settings, log=lambda _: None)
        built = run_days(settings, FIRST, LAST, log=lambda _: None)
        yield Pushed(sim, receiver, settings, pushes, request.param, drained.errors + built.errors)
    finally:
        sim.close()
        receiver.close()


def test_each_application_s_receipts_are_filed_under_it_once(pushed):
    assert pushed.pushes and all(p["acknowledged"] for p in pushed.pushes)
    assert not pushed.errors
    warehouse = pushed.settings.warehouse
    for app in APPS:
        due = pushed.sim.state.due_receipts(sdk_app_id=app)
        truth = {(r.message.serial_no, r.report_status, r.user_receive_time) for r in due}
        assert truth and len(truth) == len(due)
        # every receipt of the application, one row each whether it came by push, by pull or both
        rows = query(warehouse, "select serial_no, report_status, user_receive_time from raw.send_status "
                                "where sms_sdk_app_id = $app", {"app": app})
        assert len(rows) == len(truth) and set(rows) == truth
        # the receipts the simulator pushed for this application were stored under it
        pushed_serials = {r["SerialNo"] for p in pushed.pushes if p["kind"] == "status" and p["sdk_app_id"] == app
                          for r in p["records"]}
        assert pushed_serials == {r.message.serial_no for r in due}
        stored = query(warehouse, "select count(*), count(distinct s.serial_no) from raw.send_status s "
                                  "join raw.batches b using (batch_id) where s.action = $action and s.sms_sdk_app_id = $app "
                                  "and b.sms_sdk_app_id = $app", {"action": callbacks.STATUS, "app": app})
        pushes = sum(1 for p in pushed.pushes if p["kind"] == "status" and p["sdk_app_id"] == app)
        assert query(warehouse, "select count(*) from raw.batches where action = $action and sms_sdk_app_id = $app",
                     {"action": callbacks.STATUS, "app": app}) == [(pushes,)]
        # pushes are spooled before the drain's pulls, so they are loaded first: every receipt's row is the push's
        assert stored == [(len(truth), len(pushed_serials))]
    assert query(warehouse, "select count(*) from (select serial_no from raw.send_status "
                            "group by serial_no having count(distinct sms_sdk_app_id) > 1)") == [(0,)]
    if pushed.also_queued:  # the same receipts also came by pull, and are not in raw twice
        assert query(warehouse, "select count(*) from raw.batches where action = 'PullSmsSendStatus' "
                                "and records > 0") != [(0,)]


def test_the_marts_match_the_truth_per_application(pushed):
    for app in APPS:
        ours = query(pushed.settings.warehouse, "select day, iso_code, sum(submitted), sum(delivered), sum(failed), "
                                                "sum(pending) from marts.delivery_daily where sms_sdk_app_id = $app "
                                                "group by all", {"app": app})
        truth = expected_delivery(pushed.sim, app, FIRST, LAST)
        assert truth and {(day, iso): tuple(int(v) for v in row) for day, iso, *row in ours} == truth
    assert query(pushed.settings.warehouse, "select count(*) from marts.message_status m join raw.send_status r "
                                            "using (serial_no) where m.sms_sdk_app_id <> r.sms_sdk_app_id") == [(0,)]


def answered_application(sim: Simulator, reply: dict) -> str | None:
    """The rule of marts/replies over the ground truth, for a reply that names no application: the
    application of the latest message delivered (final receipt SUCCESS) to the same number with
    the same signature, sent in the 72 hours before the reply; None when there is none."""
    now = sim.state.now()
    latest = None
    for app in APPS:
        for m in sim.state.truth_messages(sdk_app_id=app):
            if m["phone_e164"] != reply["phone"] or m["sign_name"] != reply["sign"]:
                continue
            if not reply["time"] - ATTRIBUTION_SECONDS < m["send_time"] <= reply["time"]:
                continue
            due = [r for r in m["receipts"] if r["user_receive_time"] <= now]
            if due and max(due, key=lambda r: r["user_receive_time"])["report_status"] == "SUCCESS":
                latest = max(latest or (m["send_time"], m["serial_no"], app), (m["send_time"], m["serial_no"], app))
    return latest[2] if latest else None


def test_each_reply_is_one_row_under_the_application_of_the_message_it_answers(pushed):
    sim, warehouse = pushed.sim, pushed.settings.warehouse
    now = sim.state.now()
    truth = [r for r in sim.state.truth_replies() if r["time"] <= now]
    assert len(truth) == sum(1 for p in pushed.pushes if p["kind"] == "reply")
    # pushed to a receiver of several applications, a reply is stored without one (the push names none)
    assert query(warehouse, "select count(*) from raw.reply_status where action = $action and sms_sdk_app_id = $unsaid",
                 {"action": callbacks.REPLY, "unsaid": callbacks.UNSAID_APPLICATION}) == [(len(truth),)]
    rows = query(warehouse, "select phone_e164, epoch(reply_time)::bigint, reply_content, sms_sdk_app_id, serial_no "
                            "from marts.replies")
    by_reply = {(phone, t, content): (app, serial) for phone, t, content, app, serial in rows}
    assert len(rows) == len(by_reply) == len(truth)  # one row each, whichever ways it came
    mismatched = []
    for reply in truth:
        app, serial = by_reply[(reply["phone"], reply["time"], reply["content"])]
        if pushed.also_queued:
            expected = reply["sdk_app_id"]  # also pulled: the pulled copy knows its application
        else:
            expected = answered_application(sim, reply)
            # the rule finds the simulator's own answer wherever the reply answers a delivered message
            if reply["caused_by"] is not None and expected is not None:
                assert expected == reply["sdk_app_id"]
        if app != expected:
            mismatched.append((reply, app, expected))
        assert serial is None or serial in {m["serial_no"] for m in sim.state.truth_messages(sdk_app_id=app)}
    assert not mismatched
    attributed = [app for app, serial in by_reply.values() if serial is not None]
    assert len(attributed) > len(truth) // 2 and set(attributed) == set(APPS)
    if not pushed.also_queued:  # replies that answer no message of either application say so
        assert query(warehouse, "select count(*) from marts.replies where sms_sdk_app_id is null and serial_no is not null") == [(0,)]


def test_a_status_url_naming_another_application_is_refused_and_nothing_is_stored(pushed):
    body = orjson.dumps([{"user_receive_time": "2026-11-19 08:03:04", "nationcode": "86", "mobile": "18501234444",
                          "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": "5000:1"}])
    with httpx.Client(base_url=pushed.receiver.url, trust_env=False, timeout=10) as client:
        other = client.post(f"/callbacks/{TOKEN}/status/1400000999", content=body)
        bare = client.post(f"/callbacks/{TOKEN}/status", content=body)
        guessed = client.post("/callbacks/not-the-token-0123456789/status/1400000999", content=body)
    assert other.status_code == 404 and other.json() == {
        "result": 1, "errmsg": f"application 1400000999 is not in SMSLEDGER_SDK_APP_ID ({', '.join(APPS)})"}
    # with several applications the bare /status cannot say whose receipts it carries
    assert bare.status_code == 404 and "/status/<SmsSdkAppId>" in bare.json()["errmsg"]
    assert guessed.status_code == 404 and guessed.json() == {"result": 1, "errmsg": "Not Found"}
    assert list(Spool(pushed.settings.spool_dir).pending()) == []
