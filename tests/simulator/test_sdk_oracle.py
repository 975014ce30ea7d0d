"""The official SDK (tencentcloud-sdk-python-sms) as the oracle of the simulator's wire format: it
signs, calls, deserializes every action with no "fileds are useless" warning on clean traffic, and
raises TencentCloudSDKException with the service's codes for every documented error case."""

from __future__ import annotations

import time
import warnings

import pytest
from support import APP, sdk_client, start
from tencentcloud.common import credential
from tencentcloud.common.common_client import CommonClient
from tencentcloud.common.exception.tencent_cloud_sdk_exception import TencentCloudSDKException
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.sms.v20210111 import models

from pipelines.config import DEMO_SECRET_ID, DEMO_SECRET_KEY
from pipelines.simulator.state import receipt_fields, reply_fields


@pytest.fixture(scope="module")
def sim():
    simulator = start(seed=23)
    yield simulator
    simulator.close()


@pytest.fixture
def client(sim):
    return sdk_client(sim)


def request(model, **fields):
    req = model()
    for name, value in fields.items():
        setattr(req, name, value)
    return req


def useless(caught) -> list[str]:
    return [str(w.message) for w in caught if "useless" in str(w.message)]


def by_number_window(sim, phone):
    now = int(sim.state.now())
    return {"BeginTime": now - 7 * 86400 + 60, "Offset": 0, "Limit": 100, "PhoneNumber": phone, "SmsSdkAppId": APP,
            "EndTime": now}


def test_every_action_deserializes_cleanly(sim, client):
    due_receipts = [receipt_fields(r) for r in sim.state.due_receipts()[:5]]
    due_replies = [reply_fields(r) for r in sim.state.due_replies()[:3]]
    phone = sim.state.due_receipts()[-1].message.recipient.phone_e164
    reply_phone = sim.state.due_replies()[-1].recipient.phone_e164
    serial = sim.state.messages[-1].serial_no or sim.state.messages[-2].serial_no
    stats = {"BeginTime": "2026010100", "EndTime": "2026010123", "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pulled = client.PullSmsSendStatus(request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP, Limit=5))
        replies = client.PullSmsReplyStatus(request(models.PullSmsReplyStatusRequest, SmsSdkAppId=APP, Limit=3))
        by_number = client.PullSmsSendStatusByPhoneNumber(
            request(models.PullSmsSendStatusByPhoneNumberRequest, **by_number_window(sim, phone)))
        reply_by_number = client.PullSmsReplyStatusByPhoneNumber(
            request(models.PullSmsReplyStatusByPhoneNumberRequest, **by_number_window(sim, reply_phone)))
        send_stats = client.SendStatusStatistics(request(models.SendStatusStatisticsRequest, **stats))
        callback_stats = client.CallbackStatusStatistics(request(models.CallbackStatusStatisticsRequest, **stats))
        signs = client.DescribeSmsSignList(request(models.DescribeSmsSignListRequest, International=0))
        templates = client.DescribeSmsTemplateList(
            request(models.DescribeSmsTemplateListRequest, International=1, Limit=100, Offset=0))
        infos = client.DescribePhoneNumberInfo(
            request(models.DescribePhoneNumberInfoRequest, PhoneNumberSet=["+8618501234444", "0086 185 0123 4445"]))
        conversion = client.ReportConversion(
            request(models.ReportConversionRequest, SmsSdkAppId=APP, SerialNo=serial, ConversionTime=int(time.time())))
        sent = client.SendSms(request(models.SendSmsRequest, PhoneNumberSet=["+6591234567"], SmsSdkAppId=APP,
                                      TemplateId="1841001", TemplateParamSet=["4370", "5"], SessionContext="oracle"))
    assert useless(caught) == []

    assert [r._serialize() for r in pulled.PullSmsSendStatusSet] == due_receipts
    assert [r._serialize() for r in replies.PullSmsReplyStatusSet] == due_replies
    assert by_number.PullSmsSendStatusSet and all(r.PhoneNumber == phone for r in by_number.PullSmsSendStatusSet)
    assert reply_by_number.PullSmsReplyStatusSet
    assert all(r.PhoneNumber == reply_phone for r in reply_by_number.PullSmsReplyStatusSet)
    assert send_stats.SendStatusStatistics.RequestCount == 0
    assert callback_stats.CallbackStatusStatistics.CallbackCount == 0
    assert len(signs.DescribeSignListStatusSet) >= 3 and signs.DescribeSignListStatusSet[0].QualificationId
    assert templates.DescribeTemplateStatusSet[0].International == 1
    assert [(i.PhoneNumber, i.IsoName) for i in infos.PhoneNumberInfoSet] == [
        ("+8618501234444", "China"), ("+8618501234445", "China")]
    assert conversion.ReportConversionStatus.Code == "OK"
    assert sent.SendStatusSet[0].Code == "Ok" and sent.SendStatusSet[0].IsoCode == "SG"
    for response in (pulled, replies, by_number, send_stats, callback_stats, signs, templates, infos, conversion, sent):
        assert len(response.RequestId) == 36


def test_statistics_through_the_sdk_match_the_ground_truth(sim, client):
    first, last = sim.state.messages[0].send_time, sim.state.messages[-1].send_time
    import datetime as dt
    import zoneinfo

    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    begin = dt.datetime.fromtimestamp(first, tz).strftime("%Y%m%d%H")
    end = dt.datetime.fromtimestamp(last, tz).strftime("%Y%m%d%H")
    stats = {"BeginTime": begin, "EndTime": end, "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
    truth = sim.state.truth_statistics(int(dt.datetime.strptime(begin, "%Y%m%d%H").replace(tzinfo=tz).timestamp()),
                                       int(dt.datetime.strptime(end, "%Y%m%d%H").replace(tzinfo=tz).timestamp()) + 3600)
    send = client.SendStatusStatistics(request(models.SendStatusStatisticsRequest, **stats)).SendStatusStatistics
    callback = client.CallbackStatusStatistics(
        request(models.CallbackStatusStatisticsRequest, **stats)).CallbackStatusStatistics
    assert send._serialize() == truth["SendStatusStatistics"]
    assert callback._serialize() == truth["CallbackStatusStatistics"]


def code_of(call) -> str:
    """The code of the TencentCloudSDKException the call raises; envelope errors carry a RequestId."""
    with pytest.raises(TencentCloudSDKException) as info:
        call()
    code = info.value.get_code()
    assert code == "ServerNetworkError" or info.value.get_request_id()
    return code


def test_auth_errors_reach_the_sdk(sim):
    pull = request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP, Limit=10)
    assert code_of(lambda: sdk_client(sim, secret_key="wrong").PullSmsSendStatus(pull)) == "AuthFailure.SignatureFailure"
    assert code_of(lambda: sdk_client(sim, secret_id="AKIDunknown").PullSmsSendStatus(pull)) == "AuthFailure.SecretIdNotFound"


def test_unsigned_payload_and_language_options_are_accepted(sim):
    client = sdk_client(sim, unsignedPayload=True, language="en-US")
    assert client.PullSmsSendStatus(request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP, Limit=1)).RequestId


def test_parameter_errors_reach_the_sdk(sim, client):
    now = int(sim.state.now())
    window = by_number_window(sim, "+8613800000000")
    stats = {"BeginTime": "2026010100", "EndTime": "2026010123", "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
    cases = [
        (client.PullSmsSendStatus, request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP, Limit=101),
         "InvalidParameterValue.LimitVerifyFail"),
        (client.PullSmsReplyStatus, request(models.PullSmsReplyStatusRequest, SmsSdkAppId="1400000009", Limit=10),
         "UnauthorizedOperation.SmsSdkAppIdVerifyFail"),
        (client.PullSmsSendStatus, request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP), "MissingParameter"),
        (client.PullSmsSendStatusByPhoneNumber,
         request(models.PullSmsSendStatusByPhoneNumberRequest, **{**window, "BeginTime": now - 8 * 86400}),
         "InvalidParameterValue.BeginTimeVerifyFail"),
        (client.PullSmsReplyStatusByPhoneNumber,
         request(models.PullSmsReplyStatusByPhoneNumberRequest, **{**window, "EndTime": window["BeginTime"] - 1}),
         "InvalidParameterValue.InvalidStartTime"),
        (client.PullSmsSendStatusByPhoneNumber,
         request(models.PullSmsSendStatusByPhoneNumberRequest, **{**window, "Offset": 100}),
         "InvalidParameterValue.OffsetVerifyFail"),
        (client.CallbackStatusStatistics,
         request(models.CallbackStatusStatisticsRequest, **{**stats, "EndTime": "2026020301"}),
         "InvalidParameterValue.EndTimeVerifyFail"),
        (client.SendStatusStatistics, request(models.SendStatusStatisticsRequest, **{**stats, "BeginTime": "20260101"}),
         "InvalidParameterValue.BeginTimeVerifyFail"),
        (client.SendStatusStatistics, request(models.SendStatusStatisticsRequest, **{**stats, "Limit": 10}),
         "InvalidParameterValue.LimitVerifyFail"),
        (client.DescribeSmsTemplateList, request(models.DescribeSmsTemplateListRequest, International=5),
         "InvalidParameterValue.InvalidInternational"),
        (client.DescribePhoneNumberInfo, request(models.DescribePhoneNumberInfoRequest, PhoneNumberSet=["+861"] * 201),
         "LimitExceeded.PhoneNumberCountLimit"),
    ]
    for method, req, code in cases:
        assert code_of(lambda method=method, req=req: method(req)) == code, req.to_json_string()


def common_client(sim, version="2021-01-11"):
    profile = ClientProfile(httpProfile=HttpProfile(endpoint=sim.url.split("//", 1)[1], protocol="http"))
    return CommonClient("sms", version, credential.Credential(DEMO_SECRET_ID, DEMO_SECRET_KEY), "ap-guangzhou",
                        profile=profile)


def test_common_client_errors(sim):
    assert code_of(lambda: common_client(sim).call_json("DescribeSmsSignLists", {"International": 0})) == "InvalidAction"
    assert code_of(lambda: common_client(sim, "2099-01-01").call_json("PullSmsSendStatus", {})) == "NoSuchVersion"
    assert code_of(lambda: common_client(sim).call_json("PullSmsSendStatus", {"Limit": 1, "SmsSdkAppId": APP,
                                                                               "Extra": 1})) == "UnknownParameter"
    response = common_client(sim).call_json("PullSmsSendStatus", {"Limit": 1, "SmsSdkAppId": APP})
    assert set(response["Response"]) == {"PullSmsSendStatusSet", "RequestId"}


def test_injected_faults_as_the_sdk_sees_them():
    sim = start(faults="PullSmsSendStatus:http503=1;PullSmsReplyStatus:ratelimit=1;SendStatusStatistics:internal=1")
    try:
        client = sdk_client(sim)
        assert code_of(lambda: client.PullSmsSendStatus(
            request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP, Limit=10))) == "ServerNetworkError"
        assert code_of(lambda: client.PullSmsReplyStatus(
            request(models.PullSmsReplyStatusRequest, SmsSdkAppId=APP, Limit=10))) == "RequestLimitExceeded"
        stats = {"BeginTime": "2026010100", "EndTime": "2026010123", "SmsSdkAppId": APP, "Limit": 0, "Offset": 0}
        assert code_of(lambda: client.SendStatusStatistics(
            request(models.SendStatusStatisticsRequest, **stats))).startswith("InternalError.")
        sim.set_faults("*:dirty=1")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            while client.PullSmsSendStatus(request(models.PullSmsSendStatusRequest, SmsSdkAppId=APP, Limit=100)) \
                    .PullSmsSendStatusSet:
                pass
        extra = sum(r["dirty"] == ["extra_field"] for h in sim.state.truth_handed_out() for r in h["records"])
        assert extra and useless(caught) and all("ExtraFoo" in w for w in useless(caught))
    finally:
        sim.close()
