"""The provider's documented example responses (reference section 7, from tccli's examples.json)
parse into our types and load into raw tables."""

import datetime as dt

import httpx
import orjson
import pytest

from pipelines.tencent import actions as A
from pipelines.tencent.client import SmsApiClient
from pipelines.tencent.envelope import parse_page, parse_response
from pipelines.tencent.errors import TencentCloudError
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool
from pipelines.spool import Spool

PULL_SEND_STATUS = b"""{"Response": {"PullSmsSendStatusSet": [
  {"Description": "DELIVRD", "CountryCode": "86", "SubscriberNumber": "18501234444", "ReportStatus": "SUCCESS",
   "PhoneNumber": "+8618501234444", "SerialNo": "5000:1045710669157053657849499619", "UserReceiveTime": 1620734188,
   "SessionContext": ""},
  {"Description": "DELIVRD", "CountryCode": "86", "SubscriberNumber": "18501234445", "ReportStatus": "SUCCESS",
   "PhoneNumber": "+8618501234445", "SerialNo": "5000:1045710669157053657849499718", "UserReceiveTime": 1620734188,
   "SessionContext": ""}],
  "RequestId": "8979fc1e-9564-4fc9-bf7d-2958ce679b72"}}"""

PULL_REPLY_STATUS = """{"Response": {"RequestId": "a0aabda6-cf91-4f3e-a81f-9198114a2279", "PullSmsReplyStatusSet": [
  {"CountryCode": "86", "ReplyContent": "1", "SubscriberNumber": "18501234444", "ExtendCode": "11",
   "ReplyTime": 1620734188, "PhoneNumber": "+8618501234444", "SignName": "腾讯云"},
  {"CountryCode": "86", "ReplyContent": "2", "SubscriberNumber": "18501234444", "ExtendCode": "11",
   "ReplyTime": 1620734189, "PhoneNumber": "+8618501234444", "SignName": "腾讯云"}]}}""".encode()

CALLBACK_STATISTICS = b"""{"Response": {"CallbackStatusStatistics": {"CallbackCount": 1745, "RequestSuccessCount": 1880,
  "CallbackFailCount": 401, "CallbackSuccessCount": 1344, "InternalErrorCount": 0, "InvalidNumberCount": 0,
  "ShutdownErrorCount": 401, "BlackListCount": 0, "FrequencyLimitCount": 0},
  "RequestId": "3314836f-0b10-45cb-b7be-593e84c1c197"}}"""

ERROR = b"""{"Response": {"Error": {"Code": "AuthFailure.SignatureFailure",
  "Message": "The provided credentials could not be validated. Please check your signature is correct."},
  "RequestId": "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"}}"""


def test_pull_examples_parse_into_pages():
    receipts = parse_page(A.PULL_SEND_STATUS, PULL_SEND_STATUS)
    assert receipts.request_id == "8979fc1e-9564-4fc9-bf7d-2958ce679b72"
    assert [r["SerialNo"] for r in receipts.records] == ["5000:1045710669157053657849499619", "5000:1045710669157053657849499718"]
    replies = parse_page(A.PULL_REPLY_STATUS, PULL_REPLY_STATUS)
    assert [r["ReplyContent"] for r in replies.records] == ["1", "2"]


def test_pull_examples_load_into_raw(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.write(A.PULL_SEND_STATUS, PULL_SEND_STATUS)
    spool.write(A.PULL_REPLY_STATUS, PULL_REPLY_STATUS)
    with open_warehouse(tmp_path / "w.duckdb") as con:
        report = load_spool(con, spool)
        receipt = con.execute("select serial_no, phone_number, report_status, user_receive_time, request_id "
                              "from raw.send_status order by serial_no").fetchone()
        signs = con.execute("select distinct sign_name from raw.reply_status").fetchall()
    assert (report.new_records, report.quarantined) == (4, 0)
    assert receipt == ("5000:1045710669157053657849499619", "+8618501234444", "SUCCESS", 1620734188,
                       "8979fc1e-9564-4fc9-bf7d-2958ce679b72")
    assert signs == [("腾讯云",)]


def test_statistics_and_error_examples():
    def app(request):
        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=CALLBACK_STATISTICS)

    client = SmsApiClient(endpoint="https://sms.tencentcloudapi.com", secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE",
                          sdk_app_id="1400006666", transport=httpx.MockTransport(app), rate_limits={})
    hour = dt.datetime(2021, 5, 1, 5, tzinfo=dt.UTC)  # 13:00 in Beijing, the example's "2021050113"
    with client:
        stats = client.callback_status_statistics(hour, hour).counters
    assert stats["CallbackSuccessCount"] + stats["CallbackFailCount"] == stats["CallbackCount"] == 1745
    assert client.statistics_params(hour, hour)["BeginTime"] == "2021050113"
    with pytest.raises(TencentCloudError) as info:
        parse_response(A.PULL_SEND_STATUS, ERROR)
    assert info.value.code == "AuthFailure.SignatureFailure"
    assert info.value.request_id == "ed93f3cb-f35e-473f-b9f3-0d451b8b79c6"
    assert orjson.loads(ERROR)["Response"]["Error"]["Message"] in str(info.value)
