"""Push callbacks (reference §6): the documented bodies mapped to records in the API's field names,
the shapes that are refused with their reasons, who sent a request behind a proxy, and the
receiver's settings."""

import ipaddress
import zoneinfo

import orjson
import pytest

from pipelines.app.receive import client_address
from pipelines.config import ConfigError, Settings
from pipelines.ingest import callbacks

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")

# verbatim from reference §6.1 and §6.2
STATUS_EXAMPLE = """[
    {
        "user_receive_time": "2015-10-17 08:03:04",
        "nationcode": "86",
        "mobile": "13xxxxxxxxx",
        "report_status": "SUCCESS",
        "errmsg": "DELIVRD",
        "description": "用户短信送达成功",
        "sid": "xxxxxxx"
    }
]""".encode()
REPLY_EXAMPLE = """{
    "extend": "扩展码",
    "mobile": "13xxxxxxxxx",
    "nationcode": "86",
    "sign": "短信签名",
    "text": "用户回复的内容",
    "time": 1457336869
}""".encode()


def test_the_documented_status_example_maps_to_a_pull_record():
    batch = callbacks.map_body(callbacks.STATUS, STATUS_EXAMPLE, "Asia/Shanghai")
    assert batch.rejected == []
    assert batch.records == [{
        "SerialNo": "xxxxxxx",
        "PhoneNumber": "+8613xxxxxxxxx",
        "CountryCode": "86",
        "SubscriberNumber": "13xxxxxxxxx",
        "ReportStatus": "SUCCESS",
        "Description": "DELIVRD",
        # 2015-10-17 08:03:04 in Beijing is 00:03:04 UTC
        "UserReceiveTime": 1445040184,
        "SessionContext": None,
        "description": "用户短信送达成功",
    }]


def test_the_documented_reply_example_maps_to_a_pull_record():
    batch = callbacks.map_body(callbacks.REPLY, REPLY_EXAMPLE, "Asia/Shanghai")
    assert batch.rejected == []
    assert batch.records == [{
        "PhoneNumber": "+8613xxxxxxxxx",
        "CountryCode": "86",
        "SubscriberNumber": "13xxxxxxxxx",
        "SignName": "短信签名",
        "ExtendCode": "扩展码",
        "ReplyContent": "用户回复的内容",
        "ReplyTime": 1457336869,
    }]


def test_receive_time_is_read_in_the_provider_zone():
    body = orjson.dumps([{"sid": "s", "report_status": "FAIL", "user_receive_time": "2026-11-30 23:59:59",
                          "ext": "ctx", "nationcode": "+44", "mobile": "07700900123"}])
    utc = callbacks.map_body(callbacks.STATUS, body, "UTC").records[0]
    beijing = callbacks.map_body(callbacks.STATUS, body, "Asia/Shanghai").records[0]
    assert utc["UserReceiveTime"] - beijing["UserReceiveTime"] == 8 * 3600
    assert utc["SessionContext"] == "ctx"
    # the national number is appended as sent; staging's normalization removes the trunk prefix
    assert utc["PhoneNumber"] == "+4407700900123" and utc["CountryCode"] == "+44"


def test_numbers_sent_as_json_numbers_read_as_their_digits():
    body = orjson.dumps({"mobile": 18501234444, "nationcode": 86, "sign": "s", "text": "TD", "time": 1_790_000_000})
    record = callbacks.map_body(callbacks.REPLY, body, SHANGHAI).records[0]
    assert (record["PhoneNumber"], record["CountryCode"], record["SubscriberNumber"]) == ("+8618501234444", "86", "18501234444")


@pytest.mark.parametrize(("action", "body", "reason"), [
    (callbacks.STATUS, b"", "callback body is not JSON"),
    (callbacks.STATUS, b"<html>", "callback body is not JSON"),
    (callbacks.STATUS, b'{"sid": "x"}', "status callback body is a JSON object, not an array"),
    (callbacks.REPLY, b"[]", "reply callback body is a JSON array, not an object"),
    (callbacks.REPLY, b'"text"', "reply callback body is a JSON string, not an object"),
    ("PullSmsSendStatus", b"[]", "PullSmsSendStatus is not a callback action"),
])
def test_a_body_of_the_wrong_shape_is_refused_with_its_reason(action, body, reason):
    assert callbacks.body_problem(action, body).startswith(reason)
    with pytest.raises(callbacks.ShapeError, match=reason.split(" (")[0]):
        callbacks.map_body(action, body, SHANGHAI)


def test_items_that_cannot_be_keyed_are_rejected_with_their_reason_and_position():
    good = {"sid": "ok", "report_status": "SUCCESS", "user_receive_time": "2026-11-30 12:00:00"}
    body = orjson.dumps([good, "junk", {**good, "sid": ""}, {**good, "user_receive_time": "yesterday"},
                         {**good, "user_receive_time": "2026-02-30 12:00:00"}, {**good, "user_receive_time": None}])
    batch = callbacks.map_body(callbacks.STATUS, body, SHANGHAI)
    assert [r["SerialNo"] for r in batch.records] == ["ok", "ok"]  # a missing time is a null time, as in pulls
    assert batch.records[1]["UserReceiveTime"] is None
    assert [(i, reason) for i, reason, _ in batch.rejected] == [
        (1, "status callback item is a JSON string, not an object"),
        (2, "status callback item without sid"),
        (3, "user_receive_time 'yesterday' is not YYYY-MM-DD HH:MM:SS"),
        (4, "user_receive_time '2026-02-30 12:00:00' is not a date and time"),
    ]
    assert orjson.loads(batch.rejected[1][2]) == {**good, "sid": ""}
    assert batch.total == 6


@pytest.mark.parametrize(("reply", "reason"), [
    ({"nationcode": "86", "sign": "s", "text": "x", "time": 1}, "reply callback without mobile"),
    ({"mobile": "185", "time": "1457336869"}, "reply callback time '1457336869' is not unix seconds"),
    ({"mobile": "185", "time": 1457336869.5}, "reply callback time 1457336869.5 is not unix seconds"),
])
def test_a_reply_without_number_or_unix_time_is_rejected(reply, reason):
    assert [r for _, r, _ in callbacks.map_body(callbacks.REPLY, orjson.dumps(reply), SHANGHAI).rejected] == [reason]


NET = ipaddress.ip_network
IP = ipaddress.ip_address
PROXY = (NET("10.0.0.0/8"),)


@pytest.mark.parametrize(("peer", "headers", "expected"), [
    ("203.0.113.9", [(b"x-forwarded-for", b"1.2.3.4")], "203.0.113.9"),  # an untrusted peer's header is ignored
    ("10.0.0.2", [(b"x-forwarded-for", b"1.2.3.4")], "1.2.3.4"),
    ("10.0.0.2", [(b"x-forwarded-for", b"6.6.6.6, 1.2.3.4, 10.0.0.7")], "1.2.3.4"),  # from the right, past proxies
    ("10.0.0.2", [(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"1.2.3.4")], "1.2.3.4"),
    ("10.0.0.2", [(b"x-forwarded-for", b"10.0.0.9, 10.0.0.8")], "10.0.0.9"),
    ("10.0.0.2", [(b"x-forwarded-for", b"6.6.6.6, not-an-ip")], None),
    ("10.0.0.2", [(b"x-real-ip", b"1.2.3.4")], "1.2.3.4"),
    ("10.0.0.2", [(b"x-real-ip", b"1.2.3.4"), (b"x-real-ip", b"5.6.7.8")], None),
    ("10.0.0.2", [], None),  # a trusted proxy that does not say who the client is
    ("::ffff:10.0.0.2", [(b"x-real-ip", b"2001:db8::1")], "2001:db8::1"),
])
def test_the_client_behind_a_trusted_proxy(peer, headers, expected):
    from pipelines.app.receive import _address

    assert client_address(_address(peer), headers, PROXY) == (IP(expected) if expected else None)


def test_receiver_settings_are_validated_and_the_token_never_shown():
    token = "s3cret-TOKEN_0123456789"
    settings = Settings.from_env({"SMSLEDGER_CALLBACK_TOKEN": token, "SMSLEDGER_CALLBACK_ALLOW": "203.0.113.0/24, 2001:db8::1",
                                  "SMSLEDGER_CALLBACK_TRUSTED_PROXIES": "127.0.0.1"}, require_credentials=False)
    assert settings.callback_token == token and token not in repr(settings)
    assert settings.callback_allow == (NET("203.0.113.0/24"), NET("2001:db8::1/128"))
    assert settings.callback_trusted_proxies == (NET("127.0.0.1/32"),)
    assert Settings.from_env({}, require_credentials=False).callback_token is None
    for env, variable in [({"SMSLEDGER_CALLBACK_TOKEN": "short"}, "SMSLEDGER_CALLBACK_TOKEN"),
                          ({"SMSLEDGER_CALLBACK_TOKEN": "has/a/slash/in/it/long"}, "SMSLEDGER_CALLBACK_TOKEN"),
                          ({"SMSLEDGER_CALLBACK_ALLOW": "10.0.0.0/8,office"}, "SMSLEDGER_CALLBACK_ALLOW"),
                          ({"SMSLEDGER_CALLBACK_TRUSTED_PROXIES": "10.0.0.0/33"}, "SMSLEDGER_CALLBACK_TRUSTED_PROXIES"),
                          ({"SMSLEDGER_CALLBACK_MAX_BODY_BYTES": "1e6"}, "SMSLEDGER_CALLBACK_MAX_BODY_BYTES"),
                          ({"SMSLEDGER_CALLBACK_MAX_CONNECTIONS": "0"}, "SMSLEDGER_CALLBACK_MAX_CONNECTIONS"),
                          ({"SMSLEDGER_CALLBACK_TIMEOUT_SECONDS": "inf"}, "SMSLEDGER_CALLBACK_TIMEOUT_SECONDS")]:
        with pytest.raises(ConfigError, match=variable) as raised:
            Settings.from_env(env, require_credentials=False)
        assert "has/a/slash" not in str(raised.value)


ROUTE_TOKEN = b"tok_cm91dGluZy10ZXN0LXRva2Vu"
TWO_APPS = ("1400006666", "1400007777")


@pytest.mark.parametrize(("target", "apps", "expected"), [
    # a status URL per application: the path says the application, the push does not
    (b"/callbacks/%s/status/1400007777" % ROUTE_TOKEN, TWO_APPS, (callbacks.STATUS, "1400007777")),
    (b"/callbacks/%s/status/1400006666?from=tencent" % ROUTE_TOKEN, TWO_APPS, (callbacks.STATUS, "1400006666")),
    (b"/callbacks/%s/status/1400006666" % ROUTE_TOKEN, ("1400006666",), (callbacks.STATUS, "1400006666")),
    # the bare /status is the one application's, written down as such
    (b"/callbacks/%s/status" % ROUTE_TOKEN, ("1400006666",), (callbacks.STATUS, "1400006666")),
    # one reply URL per account: with one application it is that one's, with several unsaid
    (b"/callbacks/%s/reply" % ROUTE_TOKEN, ("1400006666",), (callbacks.REPLY, "1400006666")),
    (b"/callbacks/%s/reply" % ROUTE_TOKEN, TWO_APPS, (callbacks.REPLY, None)),
])
def test_the_path_names_the_action_and_the_application(target, apps, expected):
    from pipelines.app.receive import route

    assert route(target, ROUTE_TOKEN, apps) == expected


@pytest.mark.parametrize(("target", "apps", "answer"), [
    # told why, to a request that knew the token
    (b"/callbacks/%s/status/1400009999" % ROUTE_TOKEN, TWO_APPS,
     "application 1400009999 is not in SMSLEDGER_SDK_APP_ID (1400006666, 1400007777)"),
    (b"/callbacks/%s/status" % ROUTE_TOKEN, TWO_APPS,
     "/status without an application, with several in SMSLEDGER_SDK_APP_ID: set each application's status "
     "callback URL to .../status/<SmsSdkAppId> (1400006666, 1400007777)"),
    # the same answer as any unknown path otherwise
    (b"/callbacks/%s/status/" % ROUTE_TOKEN, TWO_APPS, None),
    (b"/callbacks/%s/status/14000x6666" % ROUTE_TOKEN, TWO_APPS, None),
    (b"/callbacks/%s/status/1400006666/x" % ROUTE_TOKEN, TWO_APPS, None),
    (b"/callbacks/%s/reply/1400006666" % ROUTE_TOKEN, TWO_APPS, None),
    (b"/callbacks/%s/statuses/1400006666" % ROUTE_TOKEN, TWO_APPS, None),
    (b"/callbacks/wrong-token-0123456789/status/1400006666", TWO_APPS, None),
    (b"/callbacks/wrong-token-0123456789/status/1400009999", TWO_APPS, None),  # a guess learns nothing
    (b"/other/%s/status/1400006666" % ROUTE_TOKEN, TWO_APPS, None),
])
def test_an_unknown_application_or_path_is_refused_with_404(target, apps, answer):
    from pipelines.app.receive import _Refusal, route

    with pytest.raises(_Refusal) as refused:
        route(target, ROUTE_TOKEN, apps)
    assert refused.value.status == 404 and refused.value.answer == answer
    assert ROUTE_TOKEN.decode() not in refused.value.reason


def test_a_spool_file_s_application():
    # the name says it (pulls, status pushes, replies to a receiver of one application)
    assert callbacks.spooled_application(callbacks.STATUS, "1400007777", "1400006666") == "1400007777"
    assert callbacks.spooled_application(callbacks.REPLY, "1400007777", "1400006666") == "1400007777"
    # a reply pushed to a receiver of several: unsaid, never the first application by default
    assert callbacks.spooled_application(callbacks.REPLY, None, "1400006666") == callbacks.UNSAID_APPLICATION
    # files of older versions without one: the first application's, as before
    assert callbacks.spooled_application(callbacks.STATUS, None, "1400006666") == "1400006666"
    assert callbacks.spooled_application("PullSmsSendStatus", None, "1400006666") == "1400006666"
