"""The client's retry rules, paging, window splitting, retention refusal and rate limiting,
against small in-process apps mounted with httpx.MockTransport."""

import datetime as dt
import threading
import time

import httpx
import orjson
import pytest

from pipelines.tencent import actions as A
from pipelines.tencent.client import RetryPolicy, SmsApiClient
from pipelines.tencent.envelope import parse_page
from pipelines.tencent.errors import TencentCloudError, TransportError, WindowTooOldError
from pipelines.tencent.ratelimit import RateLimiter

NOW = 1_790_000_000


def envelope(**fields):
    return httpx.Response(200, headers={"Content-Type": "application/json"},
                          content=orjson.dumps({"Response": {**fields, "RequestId": "req-1"}}))


def error(code, message="boom"):
    return envelope(Error={"Code": code, "Message": message})


def make_client(app, **kwargs):
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, base_seconds=0.0))
    kwargs.setdefault("rate_limits", {})
    return SmsApiClient(
        endpoint="https://sms.tencentcloudapi.com", secret_id="AKIDEXAMPLE", secret_key="SECRETKEYEXAMPLE",
        sdk_app_id="1400006666", transport=httpx.MockTransport(app), clock=lambda: NOW, sleep=lambda s: None, seed=1,
        **kwargs,
    )


class Script:
    """Answers requests from a list, recording what was asked."""

    def __init__(self, *answers):
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


@pytest.mark.parametrize("transient", [
    error("RequestLimitExceeded"),
    error("RequestLimitExceeded.UinLimitExceeded"),
    error("InternalError.Timeout"),
    httpx.Response(502, text="bad gateway"),
    httpx.ConnectError("refused"),
    httpx.ReadTimeout("slow"),
    httpx.Response(200, headers={"Content-Type": "application/json"}, content=b'{"Response": {"SendStatusStat'),
])
def test_transient_faults_are_retried(transient):
    app = Script(transient, envelope(SendStatusStatistics={"FeeCount": 1, "RequestCount": 2, "RequestSuccessCount": 2}))
    with make_client(app) as client:
        stats = client.send_status_statistics(dt.datetime(2026, 11, 1, tzinfo=dt.UTC), dt.datetime(2026, 11, 1, tzinfo=dt.UTC))
    assert stats.counters["RequestCount"] == 2
    assert len(app.requests) == 2


@pytest.mark.parametrize("code", [
    "AuthFailure.SignatureFailure", "AuthFailure.SecretIdNotFound", "InvalidParameterValue.LimitVerifyFail",
    "InvalidParameter", "MissingParameter", "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
])
def test_permanent_errors_fail_at_once_with_code_message_and_request_id(code):
    app = Script(error(code, "nope"))
    with make_client(app) as client, pytest.raises(TencentCloudError) as info:
        client.call(A.DESCRIBE_SIGN_LIST, {"International": 0})
    assert len(app.requests) == 1
    assert (info.value.code, info.value.message, info.value.request_id) == (code, "nope", "req-1")
    line = str(info.value)
    assert code in line and "req-1" in line and "\n" not in line


def test_retries_are_bounded():
    app = Script(*[error("InternalError.UnknownError")] * 4)
    with make_client(app) as client, pytest.raises(TencentCloudError):
        client.call(A.DESCRIBE_SIGN_LIST, {"International": 0})
    assert len(app.requests) == 4


def test_backoff_grows_with_jitter():
    delays = []
    app = Script(*[httpx.Response(503)] * 5)
    client = SmsApiClient(endpoint="https://x", secret_id="a", secret_key="b", sdk_app_id="1", rate_limits={},
                          transport=httpx.MockTransport(app), sleep=delays.append, seed=3,
                          retry=RetryPolicy(max_attempts=5, base_seconds=1.0, max_seconds=100))
    with client, pytest.raises(TransportError):
        client.call(A.DESCRIBE_SIGN_LIST, {})
    assert len(delays) == 4
    assert all(0 <= d <= 2**i for i, d in enumerate(delays))


def test_queue_pull_returns_raw_bytes_and_is_never_retried():
    body = orjson.dumps({"Response": {"PullSmsSendStatusSet": [{"SerialNo": "1"}], "RequestId": "r"}})
    app = Script(httpx.Response(200, headers={"Content-Type": "application/json"}, content=body))
    with make_client(app) as client:
        page = client.pull_queue_raw(A.PULL_SEND_STATUS)
    assert page.body == body and not page.indeterminate
    assert orjson.loads(app.requests[0].content) == {"Limit": 100, "SmsSdkAppId": "1400006666"}
    assert parse_page(A.PULL_SEND_STATUS, page.body).records == [{"SerialNo": "1"}]

    for failure in (httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("peer closed"), httpx.Response(500)):
        app = Script(failure)
        with make_client(app) as client:
            page = client.pull_queue_raw(A.PULL_SEND_STATUS)
        assert page.indeterminate and page.failure
        assert len(app.requests) == 1


def test_a_cut_body_is_never_read_as_an_empty_page():
    """A body cut short inside the JSON (the connection-level cut is the simulator's `truncate`
    fault, covered in test_simulator and the crash test) fails to parse; it is not "no records"."""
    def app(request):
        return httpx.Response(200, headers={"Content-Type": "application/json"}, content=b'{"Response": {"PullSms')

    with make_client(app) as client:
        page = client.pull_queue_raw(A.PULL_SEND_STATUS)
    with pytest.raises(TransportError, match="not the API's JSON envelope"):
        parse_page(A.PULL_SEND_STATUS, page.body)


def receipts_app(receive_times, calls):
    def app(request):
        p = orjson.loads(request.content)
        calls.append((p["BeginTime"], p["EndTime"]))
        assert p["Offset"] == 0 and p["Limit"] <= 100
        hits = [t for t in receive_times if p["BeginTime"] <= t <= p["EndTime"]][: p["Limit"]]
        return envelope(PullSmsSendStatusSet=[{"SerialNo": f"s{t}", "UserReceiveTime": t} for t in hits])
    return app


def test_full_page_splits_the_window_until_every_record_is_read():
    times = sorted({NOW - 86400 + (i * 37) % 80000 for i in range(1000)})
    calls = []
    with make_client(receipts_app(times, calls)) as client:
        records = [r for _, page in client.by_number_pages(A.PULL_SEND_STATUS_BY_NUMBER, "+8618501234444", NOW - 86400, NOW)
                   for r in page.records]
    assert sorted(r["UserReceiveTime"] for r in records) == times
    assert len(calls) > len(times) // 100


def test_window_beyond_seven_days_is_refused_before_any_request():
    calls = []
    with make_client(receipts_app([], calls)) as client, pytest.raises(WindowTooOldError, match="7 days"):
        next(client.by_number_pages(A.PULL_SEND_STATUS_BY_NUMBER, "+8618501234444", NOW - 8 * 86400, NOW))
    assert calls == []


def test_statistics_hours_in_provider_zone_and_callback_ranges_split_at_32_days():
    seen = []

    def app(request):
        p = orjson.loads(request.content)
        seen.append((request.headers["X-TC-Action"], p["BeginTime"], p["EndTime"]))
        return envelope(CallbackStatusStatistics={"CallbackCount": 1, "CallbackSuccessCount": 1})

    begin = dt.datetime(2026, 1, 1, 0, tzinfo=dt.UTC)
    end = dt.datetime(2026, 3, 15, 23, tzinfo=dt.UTC)
    with make_client(app) as client:
        totals = client.callback_status_statistics(begin, end)
    assert seen[0][1] == "2026010108"  # 00:00 UTC is 08:00 in Asia/Shanghai
    assert seen[-1][2] == "2026031607"
    assert len(seen) == 3 and totals.counters["CallbackCount"] == 3 and len(totals.request_ids) == 3
    for _, b, e in seen:
        gap = dt.datetime.strptime(e, "%Y%m%d%H") - dt.datetime.strptime(b, "%Y%m%d%H")
        assert gap <= dt.timedelta(days=32)
    # consecutive ranges neither overlap nor leave an hour out
    for (_, _, e), (_, b, _) in zip(seen, seen[1:]):
        assert dt.datetime.strptime(b, "%Y%m%d%H") - dt.datetime.strptime(e, "%Y%m%d%H") == dt.timedelta(hours=1)

    with make_client(app) as client, pytest.raises(ValueError, match="aware"):
        client.send_status_statistics(dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2))


def test_rate_limiter_holds_concurrent_workers_to_the_limit():
    limiter = RateLimiter({"X": 50}, fraction=0.95)
    stamps = []
    lock = threading.Lock()

    def worker():
        for _ in range(25):
            limiter.acquire("X")
            with lock:
                stamps.append(time.monotonic())

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stamps.sort()
    assert len(stamps) == 150
    # in every rolling second there are at most 50 requests
    j = 0
    for i, s in enumerate(stamps):
        while stamps[j] <= s - 1.0:
            j += 1
        assert i - j + 1 <= 50
    assert stamps[-1] - stamps[0] >= 1.9  # 150 requests at 50/s take at least two full windows


def test_a_late_waking_sender_does_not_let_the_next_ones_bunch_up():
    """Threads wake late from their sleeps (the GIL, the scheduler): requests must still leave at
    most `limit` per rolling second, counted when they actually leave."""
    clock = [0.0]

    def oversleep(seconds):
        clock[0] += seconds + 0.3

    limiter = RateLimiter({"X": 10}, fraction=1.0, clock=lambda: clock[0], sleep=oversleep)
    sent = []
    for _ in range(60):
        limiter.acquire("X")
        sent.append(clock[0])
    j = 0
    for i, s in enumerate(sent):
        while sent[j] <= s - 1.0:
            j += 1
        assert i - j + 1 <= 10, f"{i - j + 1} requests in the second before {s}"


def test_describe_lists_page_through_everything():
    signs = [{"SignId": i} for i in range(230)]

    def app(request):
        p = orjson.loads(request.content)
        return envelope(DescribeSignListStatusSet=signs[p["Offset"]: p["Offset"] + p["Limit"]])

    with make_client(app) as client:
        assert len(client.describe_sign_list(0)) == 230
