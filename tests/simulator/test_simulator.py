"""The simulator against its own ground truth: queue semantics, by-number windows, statistics,
rate limits, faults and their loss accounting, dirty records, files, admin routes, traffic shape."""

from __future__ import annotations

import collections
import datetime as dt
import json
import time
import zoneinfo

import httpx
import orjson
import phonenumbers
import pytest
from support import APP, Api, start

from pipelines.simulator import catalog as C
from pipelines.simulator.faults import FaultPlan, FaultSpecError
from pipelines.simulator.state import receipt_fields
from pipelines.simulator.traffic import generate_traffic

END = 1_795_000_000.0
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="module")
def traffic():
    return generate_traffic(5, 7, 1500, END)


@pytest.fixture
def sim():
    simulator = start()
    yield simulator
    simulator.close()


@pytest.fixture
def api(sim):
    client = Api(sim)
    yield client
    client.close()


def key(record):
    return record["SerialNo"], record["ReportStatus"], record["UserReceiveTime"]


# -- traffic ------------------------------------------------------------------------------


def test_numbers_are_valid_for_their_regions(traffic):
    for recipient in traffic.recipients[::7]:
        number = phonenumbers.parse(recipient.phone_e164)
        assert phonenumbers.is_valid_number(number), recipient
        assert phonenumbers.region_code_for_number(number) == recipient.iso_code
        assert phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164) == recipient.phone_e164
        assert recipient.phone_e164 == f"+{recipient.country_code}{recipient.subscriber}"


def test_traffic_shape(traffic):
    messages = traffic.messages
    assert len(messages) == 7 * 1500
    assert all(traffic.start <= m.send_time < traffic.end for m in messages)
    assert [m.send_time for m in messages] == sorted(m.send_time for m in messages)
    countries = collections.Counter(m.recipient.iso_code for m in messages)
    assert 0.70 < countries["CN"] / len(messages) < 0.80
    assert set(countries) == {"CN", "HK", "SG", "US", "GB", "IN", "BR", "ID"}
    assert len({m.recipient.phone_e164 for m in messages}) < len(messages) / 2  # numbers repeat

    failed = [m for m in messages if not m.ok]
    assert 0.01 < len(failed) / len(messages) < 0.05
    assert all(m.serial_no == "" and m.fee == 0 and not m.receipts and m.iso_code == "" for m in failed)
    ok = [m for m in messages if m.ok]
    serials = [m.serial_no for m in ok]
    assert len(set(serials)) == len(serials)
    assert all(s[:4].isdigit() and s[4] == ":" and s[5:].isdigit() and 24 <= len(s[5:]) <= 28 for s in serials)

    assert any(not m.receipts for m in ok)
    two = [m for m in ok if len(m.receipts) == 2]
    assert two and all(m.receipts[0].user_receive_time < m.receipts[1].user_receive_time for m in two)
    assert all(r.user_receive_time > m.send_time for m in ok for r in m.receipts)
    assert any(m.final.user_receive_time >= traffic.end for m in ok if m.final)
    latencies = sorted(m.final.user_receive_time - m.send_time for m in ok if m.final)
    assert latencies[len(latencies) // 2] < 60 and latencies[-1] > 86400
    descriptions = {m.final.description for m in ok if m.final}
    assert C.DELIVERED in descriptions and descriptions - {C.DELIVERED} <= set(C.FAILURE_CATEGORY)
    rate = {iso: sum(m.final.report_status == "SUCCESS" for m in ok if m.final and m.recipient.iso_code == iso)
            / sum(1 for m in ok if m.final and m.recipient.iso_code == iso) for iso in ("CN", "IN")}
    assert rate["CN"] > rate["IN"]

    replies = traffic.replies
    assert any(r.is_opt_out for r in replies) and any(not r.is_opt_out for r in replies)
    assert any(r.caused_by is None for r in replies)
    by_serial = {m.serial_no: m for m in ok}
    for r in replies:
        if r.caused_by:
            m = by_serial[r.caused_by]
            assert (r.recipient, r.sign_name) == (m.recipient, m.sign_name)
            assert m.final.report_status == "SUCCESS" and r.reply_time > m.final.user_receive_time
    conversions = [m for m in ok if m.conversion_time]
    assert conversions and all(m.final.report_status == "SUCCESS" for m in conversions)
    assert any(m.conversion_time - m.send_time > 7 * 86400 for m in conversions)


def test_opt_out_words():
    assert all(C.is_opt_out(w) for w in ("TD", "td", " T ", "退订", "stop", "Unsubscribe"))
    assert not any(C.is_opt_out(w) for w in ("好的", "1", "TDX", "stop it"))


# -- queues -------------------------------------------------------------------------------


def test_queue_hands_out_each_receipt_once_oldest_first(sim, api):
    records = api.drain()
    assert len({key(r) for r in records}) == len(records)
    assert len(records) == len(sim.state.due_receipts())
    assert [r["UserReceiveTime"] for r in records] == sorted(r["UserReceiveTime"] for r in records)
    assert all(r["UserReceiveTime"] <= sim.state.now() for r in records)
    assert {key(r) for r in records} == {key(receipt_fields(r)) for r in sim.state.due_receipts()}
    handed = list(sim.state.truth_handed_out())
    assert all(h["outcome"] == "delivered" for h in handed)
    assert sum(len(h["records"]) for h in handed) == len(records)
    assert api.pull() == []


def test_late_receipts_and_replies_appear_when_the_clock_advances(sim, api):
    first = {key(r) for r in api.drain()}
    replies_before = len(api.drain("PullSmsReplyStatus"))
    assert replies_before == len(sim.state.due_replies())
    now = sim.state.now()
    assert api.admin("POST", "/_sim/clock", {"advance_seconds": 3 * 86400}).json()["now"] == pytest.approx(now + 3 * 86400)
    later = api.drain()
    assert later and not first & {key(r) for r in later}
    assert all(now < r["UserReceiveTime"] <= now + 3 * 86400 for r in later)
    assert len(first) + len(later) == len(sim.state.due_receipts())
    assert replies_before + len(api.drain("PullSmsReplyStatus")) == len(sim.state.due_replies())


def test_pull_limit_is_respected(api):
    assert len(api.pull(limit=7)) == 7
    assert len(api.pull(limit=1)) == 1
    for limit in (0, 101, -1):
        assert api.error("PullSmsSendStatus", {"Limit": limit, "SmsSdkAppId": APP}) == "InvalidParameterValue.LimitVerifyFail"


# -- by-number ----------------------------------------------------------------------------


def test_by_number_pulls_are_rereadable_windows(sim, api):
    now = int(sim.state.now())
    counts = collections.Counter(r.message.recipient.phone_e164 for r in sim.state.due_receipts()
                                 if r.user_receive_time >= now - 7 * 86400 + 60)
    phone = counts.most_common(1)[0][0]
    params = {"BeginTime": now - 7 * 86400 + 60, "Offset": 0, "Limit": 100, "PhoneNumber": phone, "SmsSdkAppId": APP,
              "EndTime": now}
    first = api.call("PullSmsSendStatusByPhoneNumber", params)["PullSmsSendStatusSet"]
    expected = [receipt_fields(r) for r in sim.state.due_receipts()
                if r.message.recipient.phone_e164 == phone and r.user_receive_time >= params["BeginTime"]]
    assert first == expected and len(first) >= 2
    assert api.call("PullSmsSendStatusByPhoneNumber", params)["PullSmsSendStatusSet"] == first
    api.drain()  # consuming the queue does not touch the archive
    assert api.call("PullSmsSendStatusByPhoneNumber", params)["PullSmsSendStatusSet"] == first

    t0, t1 = first[0]["UserReceiveTime"], first[1]["UserReceiveTime"]
    window = api.call("PullSmsSendStatusByPhoneNumber", {**params, "BeginTime": t0, "EndTime": t1})
    assert [r["UserReceiveTime"] for r in window["PullSmsSendStatusSet"]] == [
        r["UserReceiveTime"] for r in first if t0 <= r["UserReceiveTime"] <= t1]
    assert api.call("PullSmsSendStatusByPhoneNumber", {**params, "Limit": 1})["PullSmsSendStatusSet"] == first[:1]
    no_end = {k: v for k, v in params.items() if k != "EndTime"}
    assert api.call("PullSmsSendStatusByPhoneNumber", no_end)["PullSmsSendStatusSet"] == first
    other = {**params, "PhoneNumber": phone[1:]}
    assert api.error("PullSmsSendStatusByPhoneNumber", other) == "InvalidParameterValue.IncorrectPhoneNumber"


def test_by_number_hides_what_has_not_arrived(sim, api):
    now = int(sim.state.now())
    future = next(r for m in sim.state.messages for r in m.receipts if now < r.user_receive_time < now + 86400)
    phone = future.message.recipient.phone_e164
    params = {"BeginTime": now - 86400, "Offset": 0, "Limit": 100, "PhoneNumber": phone, "SmsSdkAppId": APP,
              "EndTime": now + 2 * 86400}
    seen = api.call("PullSmsSendStatusByPhoneNumber", params)["PullSmsSendStatusSet"]
    assert all(r["UserReceiveTime"] <= now for r in seen)
    sim.advance(86400)
    seen = api.call("PullSmsSendStatusByPhoneNumber", params)["PullSmsSendStatusSet"]
    assert future.user_receive_time in {r["UserReceiveTime"] for r in seen}


def test_by_number_replies(sim, api):
    now = int(sim.state.now())
    reply = next(r for r in reversed(sim.state.due_replies()) if r.reply_time > now - 6 * 86400)
    params = {"BeginTime": reply.reply_time, "Offset": 0, "Limit": 100, "PhoneNumber": reply.recipient.phone_e164,
              "SmsSdkAppId": APP, "EndTime": reply.reply_time}
    records = api.call("PullSmsReplyStatusByPhoneNumber", params)["PullSmsReplyStatusSet"]
    assert {(r["ReplyContent"], r["SignName"]) for r in records} >= {(reply.content, reply.sign_name)}


@pytest.mark.parametrize(("change", "code"), [
    ({"BeginTime": -8 * 86400}, "InvalidParameterValue.BeginTimeVerifyFail"),
    ({"EndTime": -2 * 86400}, "InvalidParameterValue.InvalidStartTime"),
    ({"Offset": 1}, "InvalidParameterValue.OffsetVerifyFail"),
    ({"Limit": 101}, "InvalidParameterValue.LimitVerifyFail"),
    ({"SmsSdkAppId": "1400000001"}, "UnauthorizedOperation.SmsSdkAppIdVerifyFail"),
    ({"Offset": None}, "MissingParameter"),
    ({"Limit": "100"}, "InvalidParameter"),
    ({"Foo": 1}, "UnknownParameter"),
])
def test_by_number_parameter_errors(sim, api, change, code):
    now = int(sim.state.now())
    params = {"BeginTime": now - 86400, "Offset": 0, "Limit": 100, "PhoneNumber": "+8613800000000", "SmsSdkAppId": APP,
              "EndTime": now}
    for name, value in change.items():
        params[name] = now + value if name in ("BeginTime", "EndTime") else value
    assert api.error("PullSmsSendStatusByPhoneNumber", {k: v for k, v in params.items() if v is not None}) == code


# -- statistics ---------------------------------------------------------------------------


def hour_of(unix: int) -> str:
    return dt.datetime.fromtimestamp(unix, SHANGHAI).strftime("%Y%m%d%H")


def expected_statistics(truth, begin, end, now):
    sent = [m for m in truth if begin <= hour_of(m["send_time"]) <= end]
    ok = [m for m in sent if m["code"] == "Ok"]
    # each message with the status of its latest receipt arrived by `now`
    latest = [max((r for r in m["receipts"] if r["user_receive_time"] <= now),
                  key=lambda r: r["user_receive_time"], default=None) for m in ok]
    arrived = [r for r in latest if r is not None]
    failed = [r for r in arrived if r["report_status"] == "FAIL"]
    callback = {"CallbackCount": len(arrived), "RequestSuccessCount": len(ok), "CallbackFailCount": len(failed),
                "CallbackSuccessCount": len(arrived) - len(failed)}
    for counter in C.FAILURE_COUNTERS:
        callback[counter] = sum(C.FAILURE_CATEGORY[r["description"]] == counter for r in failed)
    send = {"FeeCount": sum(m["fee"] for m in ok), "RequestCount": len(sent), "RequestSuccessCount": len(ok)}
    return send, callback


def test_statistics_agree_with_the_messages(sim, api):
    truth = api.admin("GET", "/_sim/truth/messages").json()
    now = sim.state.now()
    first, last = truth[0]["send_time"], truth[-1]["send_time"]
    busiest = collections.Counter(hour_of(m["send_time"]) for m in truth).most_common(1)[0][0]
    ranges = [(hour_of(first), hour_of(last)), (busiest, busiest), (hour_of(first + 86400), hour_of(first + 2 * 86400)),
              ("2020010100", "2020010123")]
    for begin, end in ranges:
        params = {"BeginTime": begin, "EndTime": end, "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
        send = api.call("SendStatusStatistics", params)["SendStatusStatistics"]
        callback = api.call("CallbackStatusStatistics", params)["CallbackStatusStatistics"]
        assert (send, callback) == expected_statistics(truth, begin, end, now), (begin, end)
        assert callback["CallbackFailCount"] == sum(callback[c] for c in C.FAILURE_COUNTERS)
        truth_stats = api.admin("GET", f"/_sim/truth/statistics?begin={begin}&end={end}").json()
        assert (truth_stats["SendStatusStatistics"], truth_stats["CallbackStatusStatistics"]) == (send, callback)
    whole = ranges[0]
    params = {"BeginTime": whole[0], "EndTime": whole[1], "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
    before = api.call("CallbackStatusStatistics", params)["CallbackStatusStatistics"]["CallbackCount"]
    sim.advance(5 * 86400)
    after = api.call("CallbackStatusStatistics", params)["CallbackStatusStatistics"]
    assert after["CallbackCount"] > before
    assert after == expected_statistics(truth, whole[0], whole[1], sim.state.now())[1]


@pytest.mark.parametrize(("action", "change", "code"), [
    ("SendStatusStatistics", {"BeginTime": "2026-11-01"}, "InvalidParameterValue.BeginTimeVerifyFail"),
    ("SendStatusStatistics", {"EndTime": "2026113124"}, "InvalidParameterValue.EndTimeVerifyFail"),
    ("SendStatusStatistics", {"EndTime": "2026103123"}, "InvalidParameterValue.EndTimeVerifyFail"),
    ("SendStatusStatistics", {"Limit": 10}, "InvalidParameterValue.LimitVerifyFail"),
    ("SendStatusStatistics", {"Offset": 1}, "InvalidParameterValue.OffsetVerifyFail"),
    ("CallbackStatusStatistics", {"EndTime": "2026120401"}, "InvalidParameterValue.EndTimeVerifyFail"),
    ("CallbackStatusStatistics", {"BeginTime": 2026110100}, "InvalidParameter"),
])
def test_statistics_parameter_errors(api, action, change, code):
    params = {"BeginTime": "2026110100", "EndTime": "2026110123", "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
    assert api.error(action, {**params, **change}) == code


def test_callback_statistics_accepts_exactly_32_days(api):
    params = {"BeginTime": "2026110100", "EndTime": "2026120300", "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
    assert api.call("CallbackStatusStatistics", params)["CallbackStatusStatistics"]["CallbackCount"] >= 0


# -- other actions ------------------------------------------------------------------------


def test_send_sms_joins_the_simulation(sim, api):
    number = "+8613812345678"
    statuses = api.call("SendSms", {"PhoneNumberSet": [number, "+86123"], "SmsSdkAppId": APP, "TemplateId": "1840001",
                                    "SignName": "小账本", "TemplateParamSet": ["1234", "5"],
                                    "SessionContext": "test"})["SendStatusSet"]
    assert [s["Code"] for s in statuses] == ["Ok", "InvalidParameterValue.IncorrectPhoneNumber"]
    assert statuses[1]["SerialNo"] == "" and statuses[1]["Fee"] == 0
    serial = statuses[0]["SerialNo"]
    message = next(m for m in api.admin("GET", "/_sim/truth/messages").json() if m["serial_no"] == serial)
    assert (message["phone_e164"], message["session_context"], message["iso_code"]) == (number, "test", "CN")
    assert api.error("SendSms", {"PhoneNumberSet": [number, "+6591234567"], "SmsSdkAppId": APP,
                                 "TemplateId": "1840001", "SignName": "小账本"}) == (
        "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber")
    assert api.error("SendSms", {"PhoneNumberSet": [number], "SmsSdkAppId": APP, "TemplateId": "1840005",
                                 "SignName": "小账本"}) == "FailedOperation.TemplateIncorrectOrUnapproved"
    assert api.error("SendSms", {"PhoneNumberSet": [number], "SmsSdkAppId": APP, "TemplateId": "1840001"}) == (
        "FailedOperation.SignatureIncorrectOrUnapproved")
    if message["receipts"]:
        api.drain()
        sim.advance(5 * 86400)
        assert serial in {r["SerialNo"] for r in api.drain()}


def test_sign_and_template_lists(api):
    signs = api.call("DescribeSmsSignList", {"International": 0, "Limit": 100, "Offset": 0})["DescribeSignListStatusSet"]
    assert len(signs) >= 3 and {s["International"] for s in signs} == {0}
    assert api.call("DescribeSmsSignList", {"International": 0, "Limit": 2, "Offset": 1})["DescribeSignListStatusSet"] == signs[1:3]
    assert api.call("DescribeSmsSignList", {"International": 1})["DescribeSignListStatusSet"][0]["International"] == 1
    by_id = api.call("DescribeSmsSignList", {"International": 0, "SignIdSet": [signs[0]["SignId"], 1]})
    assert by_id["DescribeSignListStatusSet"] == signs[:1]
    mainland = api.call("DescribeSmsTemplateList", {"International": 0, "Limit": 100})["DescribeTemplateStatusSet"]
    international = api.call("DescribeSmsTemplateList", {"International": 1, "Limit": 100})["DescribeTemplateStatusSet"]
    assert len(mainland) + len(international) >= 5 and {t["International"] for t in international} == {1}
    assert api.error("DescribeSmsTemplateList", {"International": 2}) == "InvalidParameterValue.InvalidInternational"
    assert api.error("DescribeSmsTemplateList", {"International": 0, "Limit": 101}) == "InvalidParameterValue.LimitVerifyFail"


def test_phone_number_info_and_conversions(sim, api):
    infos = api.call("DescribePhoneNumberInfo", {"PhoneNumberSet": ["+86018501234444", "008618501234445", "nope"]})
    assert [(i["PhoneNumber"], i["IsoCode"], i["NationCode"]) for i in infos["PhoneNumberInfoSet"]] == [
        ("+8618501234444", "CN", "86"), ("+8618501234445", "CN", "86"), ("nope", "DEF", "")]
    assert api.error("DescribePhoneNumberInfo", {"PhoneNumberSet": ["+8618501234444"] * 201}) == "LimitExceeded.PhoneNumberCountLimit"
    status = api.call("ReportConversion", {"SmsSdkAppId": APP, "SerialNo": "2433:1", "ConversionTime": 1795000000})
    assert status["ReportConversionStatus"] == {"Code": "OK", "Message": "success"}
    assert sim.state.reported_conversions[-1]["SerialNo"] == "2433:1"


# -- auth and envelope --------------------------------------------------------------------


def test_common_errors(api):
    pull = {"Limit": 10, "SmsSdkAppId": APP}
    now = int(time.time())
    assert api.error("PullSmsSendStatus", pull, timestamp=now - 301) == "AuthFailure.SignatureExpire"
    assert api.error("PullSmsSendStatus", pull, timestamp=now + 301) == "AuthFailure.SignatureExpire"
    assert api.error("PullSmsSendStatus", pull, authorization="TC3-HMAC-SHA256 nonsense") == "AuthFailure.InvalidAuthorization"
    good = api.post("PullSmsSendStatus", pull).request.headers["Authorization"]
    assert api.error("PullSmsSendStatus", pull, authorization=good.replace("/sms/", "/cvm/")) == "AuthFailure.InvalidAuthorization"
    assert api.error("PullSmsSendStatus", pull, authorization=good.replace("content-type;host", "host")) == (
        "AuthFailure.InvalidAuthorization")
    assert api.error("PullSmsSendStatus", pull, authorization=good.replace(
        good.split("/")[1], "2001-01-01")) == "AuthFailure.SignatureFailure"
    assert api.error("PullSmsSendStatus", pull, headers={"X-TC-Version": "2019-07-11"}) == "NoSuchVersion"
    assert api.error("PullSmsSendStatus", pull, headers={"X-TC-Region": "mars-1"}) == "UnsupportedRegion"
    assert api.error("PullSmsSendStatus", pull, headers={"X-TC-Region": ""}) == "MissingParameter"
    assert api.error("NoSuchAction", pull) == "InvalidAction"
    assert api.error("PullSmsSendStatus", body=b'{"Limit": 1,') == "FailedOperation.JsonParseFail"
    assert api.error("PullSmsSendStatus", body=b"[1]") == "InvalidParameter"
    assert api.error("PullSmsSendStatus", {"Limit": 1}) == "MissingParameter"
    assert api.error("PullSmsSendStatus", {"Limit": 1, "SmsSdkAppId": "1"}) == "UnauthorizedOperation.SmsSdkAppIdVerifyFail"
    assert api.error("PullSmsSendStatus", {"Limit": True, "SmsSdkAppId": APP}) == "InvalidParameter"
    get = api.http.get("/")
    assert get.status_code == 200 and orjson.loads(get.content)["Response"]["Error"]["Code"] == "UnsupportedProtocol"


def test_signature_variants_are_verified(sim, api):
    from pipelines.tencent.signing import compute_signature, credential_date

    pull = orjson.dumps({"Limit": 1, "SmsSdkAppId": APP})
    now = int(time.time())
    for unsigned in (False, True):
        headers = {"content-type": "application/json", "host": api.host, "x-tc-action": "pullsmssendstatus"}
        signature, signed = compute_signature(api.secret_key, now, "POST", headers, pull, unsigned_payload=unsigned)
        authorization = (f"TC3-HMAC-SHA256 Credential={api.secret_id}/{credential_date(now)}/sms/tc3_request, "
                         f"SignedHeaders={signed}, Signature={signature}")
        extra = {"X-TC-Content-SHA256": "UNSIGNED-PAYLOAD"} if unsigned else {}
        assert "PullSmsSendStatusSet" in api.call("PullSmsSendStatus", body=pull, timestamp=now,
                                                   authorization=authorization, headers=extra)
        tampered = pull.replace(b"1,", b"2,")
        code = "PullSmsSendStatusSet" if unsigned else "AuthFailure.SignatureFailure"
        response = orjson.loads(api.post("PullSmsSendStatus", body=tampered, timestamp=now,
                                         authorization=authorization, headers=extra).content)["Response"]
        assert code in response or response.get("Error", {}).get("Code") == code


def test_errors_are_json_envelopes_with_exact_content_type(api):
    response = api.post("PullSmsSendStatus", {"Limit": 500, "SmsSdkAppId": APP})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    payload = json.loads(response.content)
    assert set(payload) == {"Response"} and set(payload["Response"]) == {"Error", "RequestId"}
    assert len(payload["Response"]["RequestId"]) == 36


# -- rate limits and faults ---------------------------------------------------------------


def test_rate_limit_per_action_per_second():
    sim = start(rate_scale=0.05)  # PullSmsSendStatus 5/s, DescribeSmsSignList 1/s
    api = Api(sim)
    try:
        codes = [api.outcome("PullSmsSendStatus", {"Limit": 1, "SmsSdkAppId": APP}) for _ in range(8)]
        assert codes[:5] == ["ok"] * 5 and set(codes[5:]) == {"RequestLimitExceeded"}
        assert api.outcome("DescribeSmsSignList", {"International": 0}) == "ok"
        assert api.outcome("DescribeSmsSignList", {"International": 0}) == "RequestLimitExceeded"
        time.sleep(1.05)
        assert api.pull(limit=1)
        assert sim.service.stats.errors["RequestLimitExceeded"] == 4
    finally:
        api.close()
        sim.close()


def test_http_faults_and_lost_records(sim, api):
    sim.set_faults("PullSmsSendStatus:http502=1")
    response = api.post("PullSmsSendStatus", {"Limit": 100, "SmsSdkAppId": APP})
    assert response.status_code == 502 and response.headers["content-type"] == "text/html"
    assert not list(sim.state.truth_handed_out())

    sim.set_faults("PullSmsSendStatus:truncate=1")
    with pytest.raises(httpx.RemoteProtocolError):
        api.post("PullSmsSendStatus", {"Limit": 100, "SmsSdkAppId": APP})
    sim.set_faults("PullSmsSendStatus:reset=1")
    for _ in range(6):
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            api.post("PullSmsSendStatus", {"Limit": 100, "SmsSdkAppId": APP})
    sim.set_faults("PullSmsSendStatus:internal=0.3,ratelimit=0.2")
    codes = collections.Counter()
    while True:
        response = api.post("PullSmsSendStatus", {"Limit": 100, "SmsSdkAppId": APP}).json()["Response"]
        if "Error" in response:
            codes[response["Error"]["Code"]] += 1
        elif not response["PullSmsSendStatusSet"]:
            break
    assert codes["RequestLimitExceeded"] and any(c.startswith("InternalError.") for c in codes)

    handed = list(sim.state.truth_handed_out())
    lost = [r for h in handed if h["outcome"] == "lost" for r in h["records"]]
    delivered = [r for h in handed if h["outcome"] == "delivered" for r in h["records"]]
    assert len(lost) >= 100 and {h["outcome"] for h in handed} == {"lost", "delivered"}
    assert not {key(r) for r in lost} & {key(r) for r in delivered}
    assert len(lost) + len(delivered) == len(sim.state.due_receipts())
    assert sim.service.stats.faults["reset"] == 6 and sim.service.stats.faults["truncate"] == 1


def test_slow_responses_lose_records_when_the_client_gives_up(sim):
    sim.set_faults("PullSmsSendStatus:slow=1,slow_seconds=0.6")
    impatient = Api(sim, timeout=0.2)
    patient = Api(sim, timeout=5)
    try:
        with pytest.raises(httpx.ReadTimeout):
            impatient.post("PullSmsSendStatus", {"Limit": 10, "SmsSdkAppId": APP})
        started = time.monotonic()
        assert len(patient.pull(limit=10)) == 10
        assert time.monotonic() - started >= 0.5
        deadline = time.monotonic() + 2
        while list(sim.state.truth_handed_out())[0]["outcome"] == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [h["outcome"] for h in list(sim.state.truth_handed_out())] == ["lost", "delivered"]
    finally:
        impatient.close()
        patient.close()


def test_dirty_records_are_recorded_in_the_ground_truth(sim, api):
    sim.set_faults("*:dirty=0.6")
    pages = [api.pull(limit=50) for _ in range(6)]
    handed = list(sim.state.truth_handed_out())
    by_serial = {m.serial_no: m for m in sim.state.messages}
    seen_variants = collections.Counter()
    previous: set = set()
    for page, h in zip(pages, handed, strict=True):
        assert len(page) == len(h["records"]) <= 50
        keys = []
        for record, truth in zip(page, h["records"], strict=True):
            variants = truth["dirty"]
            seen_variants.update(variants)
            m = by_serial[truth["SerialNo"]]
            e164, cc, national = m.recipient.phone_e164, m.recipient.country_code, m.recipient.subscriber
            assert record["SerialNo"] == truth["SerialNo"]
            expected_phone = {"phone_no_plus": e164[1:], "phone_national": national,
                              "phone_00_prefix": "00" + e164[1:]}.get(variants[0] if variants else "", e164)
            assert record["PhoneNumber"] == expected_phone
            assert record["CountryCode"] == ("" if variants == ["empty_country_code"] else cc)
            t = truth["UserReceiveTime"]
            if variants == ["time_ms"]:
                assert record["UserReceiveTime"] // 1000 == t
            else:
                assert record["UserReceiveTime"] == (0 if variants == ["time_zero"] else t)
            assert ("ExtraFoo" in record) == (variants == ["extra_field"])
            if variants == ["duplicate"]:
                assert keys[-1] == truth["SerialNo"]
            if variants == ["repeat"]:
                assert truth["SerialNo"] in previous
            keys.append(truth["SerialNo"])
        previous |= set(keys)
    assert len(seen_variants) >= 7
    plain = FaultPlan.parse("")
    assert plain.probability("PullSmsSendStatus", "dirty") == 0


def test_fault_spec_grammar():
    plan = FaultPlan.parse("PullSmsSendStatus: http500=0.05, slow=0.02 ; *:dirty=0.1,reset=0.2;slow_seconds=4")
    assert plan.probability("PullSmsSendStatus", "http500") == 0.05
    assert plan.probability("PullSmsSendStatus", "reset") == 0.2
    assert plan.probability("SendSms", "dirty") == 0.1 and plan.probability("SendSms", "http500") == 0
    assert plan.slow_seconds_for("SendSms") == 4
    for bad in ("Nope:http500=0.1", "*:explode=0.1", "*:http500=2", "*:http500=0.6,reset=0.6", "*", "*:http500"):
        with pytest.raises(FaultSpecError):
            FaultPlan.parse(bad)


# -- files and admin ----------------------------------------------------------------------


def test_sending_application_files(tmp_path):
    sim = start(out_dir=tmp_path)
    try:
        def read(name):
            return [json.loads(line) for line in (tmp_path / name).read_text().splitlines()]

        sends = read("sends.ndjson")
        assert len(sends) == len(sim.state.messages)
        assert set(sends[0]) == {"SerialNo", "PhoneNumber", "Fee", "SessionContext", "Code", "Message", "IsoCode",
                                 "SendTime", "SmsSdkAppId", "TemplateId", "SignName"}
        failed = [s for s in sends if s["Code"] != "Ok"]
        assert failed and all(s["SerialNo"] == "" and s["Fee"] == 0 for s in failed)
        conversions = read("conversions.ndjson")
        now = sim.state.now()
        expected = sorted(m.conversion_time for m in sim.state.messages if m.conversion_time and m.conversion_time <= now)
        assert sorted(c["ConversionTime"] for c in conversions) == expected
        sim.advance(10 * 86400)
        assert len(read("conversions.ndjson")) == sum(1 for m in sim.state.messages if m.conversion_time)
        assert not list(tmp_path.glob(".*.tmp"))
    finally:
        sim.close()


def test_admin_routes(sim, api):
    assert api.admin("GET", "/_sim/clock").json()["runs"] is False
    assert api.admin("POST", "/_sim/clock", {"now": 1}).status_code == 400
    assert api.admin("POST", "/_sim/clock", {}).status_code == 400
    assert api.admin("POST", "/_sim/faults", {"spec": "*:boom=1"}).status_code == 400
    assert api.admin("POST", "/_sim/faults", {"spec": "*:dirty=0.5"}).json()["rules"] == {"*": {"dirty": 0.5}}
    assert api.admin("GET", "/_sim/faults").json()["spec"] == "*:dirty=0.5"
    assert api.admin("GET", "/_sim/nothing").status_code == 404
    assert api.admin("DELETE", "/_sim/clock").status_code == 405
    api.pull(limit=3)
    stats = api.admin("GET", "/_sim/stats").json()
    assert stats["requests"]["PullSmsSendStatus"] == 1 and stats["queues"]["PullSmsSendStatus"]["handed_out"] >= 3
    handed = api.admin("GET", "/_sim/truth/handed_out").json()
    assert handed[0]["action"] == "PullSmsSendStatus" and handed[0]["outcome"] == "delivered"
    replies = api.admin("GET", "/_sim/truth/replies").json()
    assert set(replies[0]) == {"sdk_app_id", "phone", "country_code", "iso_code", "sign", "content", "time", "is_opt_out", "caused_by"}
    message = api.admin("GET", "/_sim/truth/messages").json()[0]
    assert {"serial_no", "receipts", "final_status", "final_description", "final_receive_time",
            "conversion_time"} <= set(message)
    assert api.admin("GET", "/_sim/truth/statistics").status_code == 400


# -- configuration and the foreground server ----------------------------------------------


def test_config_from_environment_and_arguments():
    import argparse

    from pipelines.config import DEMO_SECRET_KEY, ConfigError
    from pipelines.simulator.config import SimulatorConfig, add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(["--port", "0", "--seed", "3", "--faults", "*:dirty=0.1", "--rate-scale", "2",
                            "--out-dir", ""])
    env = {"TENCENTCLOUD_SECRET_ID": "AKIDmine", "TENCENTCLOUD_SECRET_KEY": "mine", "SMSLEDGER_SDK_APP_ID": "1400123456"}
    config = config_from_args(ns, env)
    assert (config.port, config.seed, config.faults, config.rate_scale, config.out_dir) == (0, 3, "*:dirty=0.1", 2.0, None)
    assert (config.secret_id, config.secret_key, config.sdk_app_id) == ("AKIDmine", "mine", "1400123456")
    assert "mine" not in repr(config).replace("AKIDmine", "")
    assert SimulatorConfig.from_env({}).secret_key == DEMO_SECRET_KEY
    with pytest.raises(ConfigError, match="TENCENTCLOUD_SECRET_KEY"):
        SimulatorConfig.from_env({"TENCENTCLOUD_SECRET_ID": "AKIDmine"})


def test_serve_in_the_foreground_until_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "TENCENTCLOUD_SECRET_ID": "AKIDmine", "TENCENTCLOUD_SECRET_KEY": "not-to-be-printed"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.simulator", "--port", "0", "--messages-per-day", "50",
         "--out-dir", str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = line.split(" at ", 1)[1].split()[0]
        assert "AKIDmine" in line and "not-to-be-printed" not in line and str(tmp_path) in line
        assert httpx.get(f"{url}/_sim/clock", trust_env=False).json()["runs"] is True
        assert (tmp_path / "sends.ndjson").stat().st_size > 0
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
