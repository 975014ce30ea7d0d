"""`smsledger receive` as Tencent and strangers meet it over loopback: a push is acknowledged once
its bytes are in the spool; refusals (wrong token, outside the allowlist, too big, too slow, too
many connections) store nothing and never log the token; what cannot be stored gets 503; no
body, header or path crashes it (fuzzed); SIGTERM lets a request under way finish; without a
token it does not start."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from pipelines.app.receive import Receiver
from pipelines.config import Settings
from pipelines.ingest import callbacks
from pipelines.spool import Spool
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import load_spool

TOKEN = "tok_Q2xpZW50U2VjcmV0VG9rZW4"
ACK = {"result": 0, "errmsg": "OK"}
STATUS = orjson.dumps([{"user_receive_time": "2026-11-30 08:03:04", "nationcode": "86", "mobile": "18501234444",
                        "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "ok", "sid": "5000:1"}])
REPLY = orjson.dumps({"extend": "", "mobile": "18501234444", "nationcode": "86", "sign": "s", "text": "TD",
                      "time": 1_796_000_000})


def receiver_lines(caplog):
    """The receiver's log lines (not the test client's, whose lines name the URLs it calls)."""
    return [r.getMessage() for r in caplog.records if r.name == "smsledger.receive"]


def receiver_settings(tmp_path, **overrides):
    return Settings(secret_id="", secret_key="", spool_dir=tmp_path / "spool", callback_token=TOKEN, **overrides)


def stored(tmp_path):
    """What is in the spool, finished or not."""
    root = tmp_path / "spool"
    return sorted(p.name for d in ("ready", "tmp") if (root / d).exists() for p in (root / d).iterdir())


@pytest.fixture
def receiver(tmp_path):
    with Receiver(receiver_settings(tmp_path, callback_timeout_seconds=2.0)) as running:
        yield running


def http(receiver):
    return httpx.Client(base_url=receiver.url, trust_env=False, timeout=10)


def exchange(port, data, *, read_timeout=5.0):
    """Send raw bytes, close our side, and read the answer until the receiver closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the receiver may answer and close before it has read everything
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_pushes_are_acknowledged_once_their_bytes_are_in_the_spool(receiver, tmp_path):
    with http(receiver) as client:  # one keep-alive connection, as a proxy would hold
        for path, body in ((f"/callbacks/{TOKEN}/status", STATUS), (f"/callbacks/{TOKEN}/reply", REPLY),
                           (f"/callbacks/{TOKEN}/status?from=tencent", STATUS)):
            response = client.post(path, content=body, headers={"content-type": "application/json"})
            assert response.status_code == 200 and response.json() == ACK
            assert response.headers["content-type"] == "application/json"
    files = list(Spool(tmp_path / "spool").pending())
    assert sorted(f.action for f in files) == ["CallbackSmsReply", "CallbackSmsStatus", "CallbackSmsStatus"]
    assert {f.path.read_bytes() for f in files} == {STATUS, REPLY}
    assert not list((tmp_path / "spool" / "tmp").iterdir())


def test_a_body_of_the_wrong_shape_is_kept_and_acknowledged(receiver, tmp_path, caplog):
    with http(receiver) as client:
        response = client.post(f"/callbacks/{TOKEN}/reply", content=b"[1, 2]")
    assert response.status_code == 200 and response.json() == ACK
    [spooled] = list(Spool(tmp_path / "spool").pending())
    assert spooled.path.read_bytes() == b"[1, 2]"
    [line] = receiver_lines(caplog)
    assert "not the documented shape (reply callback body is a JSON array, not an object)" in line
    with open_warehouse(tmp_path / "w.duckdb") as con:
        load_spool(con, Spool(tmp_path / "spool"))
        assert con.execute("select reason from raw.quarantine").fetchall() == [
            ("reply callback body is a JSON array, not an object",)]


def test_wrong_tokens_and_paths_are_refused_alike_and_nothing_is_stored(receiver, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    refused = [f"/callbacks/{TOKEN[:-1]}/status", f"/callbacks/{TOKEN}x/status", "/callbacks/status",
               "/callbacks//status", f"/callbacks/{TOKEN}/", f"/callbacks/{TOKEN}/statuses", f"/{TOKEN}/status",
               f"/callbacks/{TOKEN.upper()}/reply", f"/x/callbacks/{TOKEN}/status", "/", "/favicon.ico",
               f"/callbacks/{TOKEN}/status/"]
    with http(receiver) as client:
        answers = {path: client.post(path, content=STATUS) for path in refused}
        wrong_method = client.get(f"/callbacks/{TOKEN}/status")
        guessed_get = client.get("/callbacks/guess/status")
    assert {(a.status_code, a.content) for a in answers.values()} == {(404, b'{"result":1,"errmsg":"Not Found"}')}
    assert guessed_get.status_code == 404
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert stored(tmp_path) == []
    lines = receiver_lines(caplog)
    assert len(lines) == len(refused) + 2
    assert all("unknown path" in line for line in lines[:len(refused)])
    assert not any(TOKEN[:12] in line or "/callbacks/" in line for line in lines)


def test_the_allowlist_refuses_other_sources_and_believes_only_trusted_proxies(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    path = f"/callbacks/{TOKEN}/status"
    allow = (__import__("ipaddress").ip_network("203.0.113.0/24"),)
    with Receiver(receiver_settings(tmp_path, callback_allow=allow)) as direct, http(direct) as client:
        outside = client.post(path, content=STATUS)
        claims = client.post(path, content=STATUS, headers={"x-forwarded-for": "203.0.113.5", "x-real-ip": "203.0.113.5"})
        wrong_token = client.post("/callbacks/nope/status", content=STATUS)
    assert outside.status_code == claims.status_code == wrong_token.status_code == 403
    assert stored(tmp_path) == []
    proxy = (__import__("ipaddress").ip_network("127.0.0.0/8"),)
    with Receiver(receiver_settings(tmp_path, callback_allow=allow, callback_trusted_proxies=proxy)) as behind, \
            http(behind) as client:
        tencent = client.post(path, content=STATUS, headers={"x-forwarded-for": "198.51.100.7, 203.0.113.5"})
        real_ip = client.post(path, content=REPLY.replace(b"TD", b"T"), headers={"x-real-ip": "203.0.113.200"})
        stranger = client.post(path, content=STATUS, headers={"x-forwarded-for": "203.0.113.5, 198.51.100.7"})
        unnamed = client.post(path, content=STATUS)
    assert (tencent.status_code, real_ip.status_code, stranger.status_code, unnamed.status_code) == (200, 200, 403, 403)
    assert len(stored(tmp_path)) == 2
    lines = receiver_lines(caplog)
    assert "refused a request from 198.51.100.7 via proxy 127.0.0.1: source not in SMSLEDGER_CALLBACK_ALLOW; answered 403" in lines
    assert "refused a request from an unnamed client via proxy 127.0.0.1: source not in SMSLEDGER_CALLBACK_ALLOW; answered 403" in lines
    assert not any(TOKEN in line for line in lines)


def test_bodies_beyond_the_limit_are_refused_unread(tmp_path):
    with Receiver(receiver_settings(tmp_path, callback_max_body_bytes=len(STATUS))) as small, http(small) as client:
        fits = client.post(f"/callbacks/{TOKEN}/status", content=STATUS)
        declared = client.post(f"/callbacks/{TOKEN}/status", content=STATUS + b" ")
        chunked = client.post(f"/callbacks/{TOKEN}/status", content=iter([STATUS, b" " * 10]))  # no length: chunked
        port = small.port
        lying = exchange(port, f"POST /callbacks/{TOKEN}/status HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999\r\n\r\n".encode())
    assert (fits.status_code, declared.status_code, chunked.status_code) == (200, 413, 413)
    assert lying.startswith(b"HTTP/1.1 413 ")
    assert len(stored(tmp_path)) == 1


def test_slow_requests_time_out_and_idle_connections_close(tmp_path, caplog):
    with Receiver(receiver_settings(tmp_path, callback_timeout_seconds=0.5)) as slow:
        with socket.create_connection(("127.0.0.1", slow.port), timeout=5) as sock:
            sock.sendall(f"POST /callbacks/{TOKEN}/status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[".encode())
            started = time.monotonic()
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 408 ") and time.monotonic() - started < 3
        with socket.create_connection(("127.0.0.1", slow.port), timeout=5) as idle:
            assert idle.recv(1) == b""  # closed quietly after the timeout
    assert stored(tmp_path) == []
    assert receiver_lines(caplog) == ["refused a request from 127.0.0.1: the request did not arrive whole within 0.5s; answered 408"]


def test_connections_beyond_the_bound_get_503_at_once(tmp_path):
    with Receiver(receiver_settings(tmp_path, callback_max_connections=2)) as bounded:
        held = [socket.create_connection(("127.0.0.1", bounded.port)) for _ in range(2)]
        time.sleep(0.2)
        assert exchange(bounded.port, b"").startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
        for sock in held:
            sock.close()
        time.sleep(0.2)
        with http(bounded) as client:
            assert client.post(f"/callbacks/{TOKEN}/reply", content=REPLY).status_code == 200


def test_a_push_that_cannot_be_stored_gets_503_so_that_it_is_retried(receiver, tmp_path, caplog):
    ready = tmp_path / "spool" / "ready"
    ready.rmdir()
    ready.write_text("not a folder")  # every rename into ready/ fails, as on a broken disk
    with http(receiver) as client:
        failed = client.post(f"/callbacks/{TOKEN}/status", content=STATUS)
        ready.unlink()
        ready.mkdir()
        retried = client.post(f"/callbacks/{TOKEN}/status", content=STATUS)
    assert failed.status_code == 503 and failed.json()["result"] != 0
    assert retried.status_code == 200
    assert len(list(Spool(tmp_path / "spool").pending())) == 1
    assert any("could not store a status push from 127.0.0.1 (NotADirectoryError" in line for line in receiver_lines(caplog))


# --- fuzz: nothing a client sends stops the receiver, and everything it stored loads ---------------

# weighted towards requests that reach the body, so that many fuzzed bodies are stored and loaded
_PATHS = st.one_of(
    st.sampled_from([f"/callbacks/{TOKEN}/status", f"/callbacks/{TOKEN}/reply"]),
    st.sampled_from([f"/callbacks/{TOKEN}/status", f"/callbacks/{TOKEN}/reply", "/callbacks/x/status", "/", "*",
                     f"http://h/callbacks/{TOKEN}/status", f"/callbacks/{TOKEN}/status?{'a' * 5000}"]),
    st.text(st.characters(codec="latin-1"), max_size=40).map(lambda t: "/" + t))
_HEADER = st.tuples(st.sampled_from(["Content-Length", "Transfer-Encoding", "X-Forwarded-For", "X-Real-IP", "Expect",
                                     "Connection", "Content-Type", "Host"]) | st.text(st.characters(codec="latin-1"), max_size=12),
                    st.sampled_from(["0", "5", "-1", "99999999999", "chunked", "gzip, chunked", "100-continue", "close",
                                     "1.2.3.4", "application/json"]) | st.text(st.characters(codec="latin-1"), max_size=30))
_JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                            st.sampled_from(["sid", "user_receive_time", "mobile", "nationcode", "time", "text", "sign",
                                             "report_status", "errmsg", "ext", "extend", "x"]), inner, max_size=6),
                        max_leaves=20)
_BODIES = st.binary(max_size=300) | _JSONISH.map(lambda v: json.dumps(v).encode())  # json: big integers too


@pytest.mark.slow
def test_no_body_header_or_path_crashes_the_receiver_and_what_it_kept_loads(tmp_path, caplog):
    with Receiver(receiver_settings(tmp_path, callback_timeout_seconds=1.0, callback_max_body_bytes=200)) as running:

        @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(method=st.sampled_from(["POST"] * 5 + ["GET", "HEAD", "PUT", "POST ", "P\x00ST"]), path=_PATHS,
               headers=st.lists(_HEADER, max_size=3), body=_BODIES, with_length=st.booleans() | st.just(True),
               version=st.sampled_from(["HTTP/1.1"] * 4 + ["HTTP/1.0", "HTTP/2", "XYZ"]))
        def one_request(method, path, headers, body, with_length, version):
            lines = [f"{method} {path} {version}", "Host: x"] + [f"{k}: {v}" for k, v in headers]
            if with_length:
                lines.append(f"Content-Length: {len(body)}")
            answer = exchange(running.port, "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body)
            assert answer.startswith(b"HTTP/1.1 ")  # a whole head always gets an answer

        @hsettings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
        @given(st.binary(max_size=500))
        def raw_bytes(data):
            exchange(running.port, data)

        one_request()
        raw_bytes()
        fuzzed = running.service.counters
        assert fuzzed.stored > 10 and fuzzed.refused > 100
        with http(running) as client:  # still serving
            assert client.post(f"/callbacks/{TOKEN}/status", content=STATUS).json() == ACK
    lines = receiver_lines(caplog)
    assert not [line for line in lines if "internal error" in line]
    assert not [line for line in lines if TOKEN[:8] in line]
    with open_warehouse(tmp_path / "w.duckdb") as con:
        report = load_spool(con, Spool(tmp_path / "spool"))
        outcomes = {o for (o,) in con.execute("select distinct outcome from raw.batches").fetchall()}
    assert report.batches == running.service.counters.stored and outcomes <= {"ok", "unparseable"}
    assert "ok" in outcomes


# --- the command, as a service ------------------------------------------------------------------

def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def command_env(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_")) and not k.lower().endswith("_proxy")}
    return {**env, "SMSLEDGER_SPOOL_DIR": str(tmp_path / "spool"), **extra}


def wait_listening(port, process, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("the receiver did not start listening")


def test_without_a_token_it_refuses_to_start_naming_the_variable(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pipelines.app.cli", "receive", "--port", str(free_port())],
                            env=command_env(tmp_path), capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("smsledger receive: set SMSLEDGER_CALLBACK_TOKEN")
    (tmp_path / "file").write_text("")
    result = subprocess.run([sys.executable, "-m", "pipelines.app.cli", "receive", "--port", str(free_port())],
                            env=command_env(tmp_path, SMSLEDGER_CALLBACK_TOKEN=TOKEN, SMSLEDGER_SPOOL_DIR=str(tmp_path / "file")),
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "SMSLEDGER_SPOOL_DIR=" in result.stderr


def test_sigterm_lets_the_request_under_way_finish_then_stops(tmp_path):
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "pipelines.app.cli", "receive", "--port", str(port)],
                               env=command_env(tmp_path, SMSLEDGER_CALLBACK_TOKEN=TOKEN), cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_listening(port, process)
        idle = socket.create_connection(("127.0.0.1", port))
        busy = socket.create_connection(("127.0.0.1", port), timeout=10)
        busy.sendall(f"POST /callbacks/{TOKEN}/status HTTP/1.1\r\nHost: x\r\nContent-Length: {len(STATUS)}\r\n\r\n".encode()
                     + STATUS[:10])
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()  # no longer accepting
        assert idle.recv(1) == b""  # idle connections are closed at once
        busy.sendall(STATUS[10:])
        answer = busy.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(callbacks.ACKNOWLEDGED)
        assert b"connection: close" in answer
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
    log = process.stderr.read()
    assert "stopped: 1 pushes stored (0 not the documented shape), 0 refused, 0 not stored" in log
    assert TOKEN not in log and "Traceback" not in log
    [spooled] = list(Spool(tmp_path / "spool").pending())
    assert spooled.path.read_bytes() == STATUS
