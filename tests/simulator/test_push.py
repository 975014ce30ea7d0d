"""Push callbacks: receipts (arrays of at most 100) and replies (one object each) are POSTed to
the callback URL as they fall due on the simulator clock, also when it is advanced; a failed push
(non-200, a result other than 0, refused, timeout) is retried twice more at the configured
interval; the ground truth says which pushes were acknowledged; and the undocumented choice of
whether pushed records stay in the pull queues works both ways."""

from __future__ import annotations

import datetime as dt
import http.server
import socket
import threading
import time
import zoneinfo

import orjson
import pytest
from support import APP, Api, start

from pipelines.simulator import catalog as C

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
END = 1_795_000_000.0


class Receiver:
    """A customer's callback endpoint on loopback: records every POST; `answer(path, body,
    attempt)` says what to do (a status and a body, or "sleep" to answer too late)."""

    def __init__(self, answer=None):
        self.requests: list[tuple[float, str, bytes]] = []
        self.answer = answer or (lambda path, body, attempt: (200, b'{"result": 0, "errmsg": "OK"}'))
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    attempt = sum(1 for _, p, b in receiver.requests if p == self.path and b == body)
                    receiver.requests.append((time.monotonic(), self.path, body))
                status, payload = receiver.answer(self.path, body, attempt)
                if status == "sleep":
                    time.sleep(payload)
                    status, payload = 200, b'{"result": 0, "errmsg": "OK"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callbacks/token"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def bodies(self, kind: str) -> list:
        with self.lock:
            return [orjson.loads(b) for _, p, b in self.requests if p.endswith("/" + kind)]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def wait_for(condition, seconds=20.0):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def pushes(sim):
    return list(sim.state.truth_pushes())


def settled(sim, expected_receipts, expected_replies, attempts=None):
    def done():
        truth = pushes(sim)
        receipts = sum(len(p["records"]) for p in truth if p["kind"] == "status")
        replies = sum(1 for p in truth if p["kind"] == "reply")
        finished = all(p["acknowledged"] or len(p["attempts"]) == 3 for p in truth)
        return receipts == expected_receipts and replies == expected_replies and finished
    return done


def test_receipts_and_replies_are_pushed_as_they_fall_due():
    receiver = Receiver()
    sim = start(messages_per_day=400, days=2, now=END, callback_url=receiver.url, callback_retry_seconds=0.05)
    api = Api(sim)
    try:
        due, replies = sim.state.due_receipts(), sim.state.due_replies()
        wait_for(settled(sim, len(due), len(replies)))
        statuses = receiver.bodies("status")
        assert all(isinstance(b, list) and 1 <= len(b) <= 100 for b in statuses)
        assert sum(len(b) == 100 for b in statuses) >= len(due) // 100 - 1
        pushed = [item for body in statuses for item in body]
        expected = [{
            "user_receive_time": dt.datetime.fromtimestamp(r.user_receive_time, SHANGHAI).strftime("%Y-%m-%d %H:%M:%S"),
            "nationcode": r.message.recipient.country_code, "mobile": r.message.recipient.subscriber,
            "report_status": r.report_status, "errmsg": r.description,
            "description": C.DESCRIPTION_TEXT[r.description], "sid": r.message.serial_no,
            "ext": r.message.session_context} for r in due]
        assert pushed == expected
        assert receiver.bodies("reply") == [{"extend": r.extend_code, "mobile": r.recipient.subscriber,
                                             "nationcode": r.recipient.country_code, "sign": r.sign_name,
                                             "text": r.content, "time": r.reply_time} for r in replies]
        truth = pushes(sim)
        assert all(p["acknowledged"] and p["attempts"] == ["ok"] and p["sdk_app_id"] == APP for p in truth)
        assert api.admin("GET", "/_sim/truth/pushes").json() == truth

        # pushed records stay in the pull queues (the default)
        assert len(api.drain()) == len(due)

        # advancing the clock pushes what falls due, and only that
        sim.advance(2 * 86400)
        later = sim.state.due_receipts()
        wait_for(settled(sim, len(later), len(sim.state.due_replies())))
        pushed = [(item["sid"], item["report_status"]) for body in receiver.bodies("status") for item in body]
        assert pushed == [(r.message.serial_no, r.report_status) for r in later]
        assert len(later) > len(due)
    finally:
        api.close()
        sim.close()
        receiver.close()


def test_with_several_applications_each_pushes_receipts_to_its_own_status_url():
    apps = (APP, "1400000111")
    receiver = Receiver()
    sim = start(sdk_app_ids=apps, messages_per_day=200, days=1, now=END, callback_url=receiver.url,
                callback_retry_seconds=0.05)
    try:
        wait_for(settled(sim, len(sim.state.due_receipts()), len(sim.state.due_replies())))
        with receiver.lock:
            requests = [(path, orjson.loads(body)) for _, path, body in receiver.requests]
        base = receiver.url.split("127.0.0.1:", 1)[1].split("/", 1)[1]
        assert {path for path, _ in requests} == {f"/{base}/status/{app}" for app in apps} | {f"/{base}/reply"}
        for app in apps:
            pushed = {item["sid"] for path, body in requests if path == f"/{base}/status/{app}" for item in body}
            assert pushed == {r.message.serial_no for r in sim.state.due_receipts(sdk_app_id=app)}
        # one reply URL for the account: the replies of both applications, naming none
        replies = [body for path, body in requests if path.endswith("/reply")]
        assert len(replies) == len(sim.state.due_replies()) and all(set(r) == {"extend", "mobile", "nationcode", "sign",
                                                                             "text", "time"} for r in replies)
        assert {p["sdk_app_id"] for p in pushes(sim) if p["kind"] == "reply"} == set(apps)
    finally:
        sim.close()
        receiver.close()


def test_a_failed_push_is_retried_twice_more_at_the_interval():
    def answer(path, body, attempt):
        if b"SUCCESS" in body or path.endswith("/reply"):  # fails twice, then acknowledged
            return [(500, b"oops"), (200, b'{"result": 1, "errmsg": "busy"}'), (200, b'{"result": 0, "errmsg": "OK"}')][
                min(attempt, 2)]
        return 200, b'{"result": 7, "errmsg": "never"}'  # a push of failures only: refused three times

    receiver = Receiver(answer)
    sim = start(messages_per_day=200, days=1, now=END, callback_url=receiver.url, callback_retry_seconds=0.3)
    try:
        wait_for(settled(sim, len(sim.state.due_receipts()), len(sim.state.due_replies())))
        truth = pushes(sim)
        acknowledged = [p for p in truth if p["acknowledged"]]
        given_up = [p for p in truth if not p["acknowledged"]]
        assert acknowledged and all(p["attempts"] == ["http 500", "result 1", "ok"] for p in acknowledged)
        assert all(p["attempts"] == ["result 7"] * 3 for p in given_up)
        with receiver.lock:
            times: dict[bytes, list[float]] = {}
            for when, _, body in receiver.requests:
                times.setdefault(body, []).append(when)
        assert all(len(t) == 3 for t in times.values())
        assert all(b - a >= 0.29 for t in times.values() for a, b in zip(t, t[1:]))
    finally:
        sim.close()
        receiver.close()


def test_refused_and_timed_out_pushes_are_not_acknowledged():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    sim = start(messages_per_day=50, days=1, now=END, callback_url=f"http://127.0.0.1:{closed_port}/cb",
                callback_retry_seconds=0.01)
    try:
        wait_for(lambda: pushes(sim) and all(len(p["attempts"]) == 3 for p in pushes(sim)))
        assert all(p["attempts"] == ["refused"] * 3 and not p["acknowledged"] for p in pushes(sim))
    finally:
        sim.close()

    receiver = Receiver(lambda path, body, attempt: ("sleep", 0.6) if attempt == 0 else (200, b'{"result":0}'))
    sim = start(messages_per_day=50, days=1, now=END, callback_url=receiver.url, callback_retry_seconds=0.01,
                callback_timeout_seconds=0.2)
    try:
        wait_for(settled(sim, len(sim.state.due_receipts()), len(sim.state.due_replies())))
        assert all(p["attempts"] == ["timeout", "ok"] and p["acknowledged"] for p in pushes(sim))
    finally:
        sim.close()
        receiver.close()


def test_pushed_records_leave_the_queues_when_so_configured():
    receiver = Receiver()
    sim = start(messages_per_day=300, days=1, now=END, callback_url=receiver.url, pushed_also_queued=False)
    api = Api(sim)
    try:
        due = sim.state.due_receipts()
        wait_for(settled(sim, len(due), len(sim.state.due_replies())))
        assert api.pull() == [] and api.pull("PullSmsReplyStatus") == []
        # the archive still has them
        r = due[-1]
        now = int(sim.state.now())
        by_number = api.call("PullSmsSendStatusByPhoneNumber", {
            "BeginTime": now - 86400, "Offset": 0, "Limit": 100, "PhoneNumber": r.message.recipient.phone_e164,
            "SmsSdkAppId": APP, "EndTime": now})["PullSmsSendStatusSet"]
        assert r.message.serial_no in {x["SerialNo"] for x in by_number}
        sim.advance(86400)
        wait_for(settled(sim, len(sim.state.due_receipts()), len(sim.state.due_replies())))
        assert api.pull() == []
    finally:
        api.close()
        sim.close()
        receiver.close()


def test_callback_options_from_the_command_line():
    import argparse

    from pipelines.config import ConfigError
    from pipelines.simulator.config import SimulatorConfig, add_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    config = config_from_args(parser.parse_args(["--callback-url", "http://127.0.0.1:9/cb", "--no-pushed-also-queued",
                                                 "--callback-retry-seconds", "2"]), {})
    assert (config.callback_url, config.pushed_also_queued, config.callback_retry_seconds) == (
        "http://127.0.0.1:9/cb", False, 2.0)
    assert config_from_args(parser.parse_args([]), {}).pushed_also_queued is True
    with pytest.raises(ConfigError, match="callback-url"):
        SimulatorConfig(callback_url="ftp://nope")
