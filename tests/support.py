"""Helpers shared by the tests (the fixtures are in conftest.py): simulators, a client of ours for
one, the demo-like settings of a pipeline pointed at one, signed raw requests (with the project's
own signer, not the client under development), the official SDK pointed at a simulator, and the
command line run as a user runs it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from pipelines.app.demo import demo_settings
from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY, Settings
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.tencent.client import SmsApiClient
from pipelines.tencent.signing import API_VERSION, authorization_header

REPO = Path(__file__).resolve().parents[1]
APP = DEMO_SDK_APP_ID
SMALL = {"port": 0, "days": 7, "messages_per_day": 300, "seed": 11, "clock_runs": False}


def start(**overrides: Any) -> Simulator:
    """A started simulator: a small seeded week with a frozen clock, unless overridden."""
    return Simulator(SimulatorConfig(**{**SMALL, **overrides})).start()


def sim_client(sim: Simulator, **overrides: Any) -> SmsApiClient:
    """Our client pointed at a simulator with its demo keys (of its first application unless
    `sdk_app_id` is given); no rate limits unless given."""
    options = {"rate_limits": {}, "sdk_app_id": DEMO_SDK_APP_ID, **overrides}
    return SmsApiClient(endpoint=sim.url, secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY, **options)


def pipeline_settings(root: Path, sim: Simulator, first_day: dt.date, **overrides: Any) -> Settings:
    """The settings `smsledger demo` gives a pipeline pointed at a simulator (its keys, its
    files, a warehouse and spool under `root`), with a Dagster instance of the test's own."""
    home = root / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    base = Settings(secret_id="", secret_key="", dagster_home=home)
    settings = demo_settings(base, sim.url, root, first_day)
    return dataclasses.replace(settings, sends_path=str(sim.config.out_dir / "sends.ndjson"),
                               conversions_path=str(sim.config.out_dir / "conversions.ndjson"), **overrides)


class Api:
    """Signed calls to a simulator over one keep-alive connection."""

    def __init__(self, sim: Simulator, *, secret_id: str = DEMO_SECRET_ID, secret_key: str = DEMO_SECRET_KEY,
                 timeout: float = 5.0):
        self.sim = sim
        self.host = sim.url.split("//", 1)[1]
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.http = httpx.Client(base_url=sim.url, trust_env=False, timeout=timeout)

    def post(self, action: str, params: dict[str, Any] | None = None, *, body: bytes | None = None,
             timestamp: int | None = None, headers: dict[str, str] | None = None,
             authorization: str | None = None) -> httpx.Response:
        body = orjson.dumps(params or {}) if body is None else body
        timestamp = int(time.time()) if timestamp is None else timestamp
        sent = {
            "Content-Type": "application/json",
            "X-TC-Action": action,
            "X-TC-Version": API_VERSION,
            "X-TC-Region": "ap-guangzhou",
            "X-TC-Timestamp": str(timestamp),
            "Authorization": authorization or authorization_header(
                self.secret_id, self.secret_key, timestamp, self.host, body),
        }
        sent.update(headers or {})
        return self.http.post("/", content=body, headers=sent)

    def call(self, action: str, params: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
        """The `Response` object of a successful call; fails the test on an error envelope."""
        response = self.post(action, params, **kwargs)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        payload = orjson.loads(response.content)["Response"]
        assert "Error" not in payload, payload
        return payload

    def error(self, action: str, params: dict[str, Any] | None = None, **kwargs: Any) -> str:
        """The Error.Code of a call expected to fail."""
        response = self.post(action, params, **kwargs)
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        payload = orjson.loads(response.content)["Response"]
        assert "Error" in payload and payload["RequestId"], payload
        return payload["Error"]["Code"]

    def outcome(self, action: str, params: dict[str, Any] | None = None) -> str:
        """"ok" or the Error.Code."""
        payload = orjson.loads(self.post(action, params).content)["Response"]
        return payload["Error"]["Code"] if "Error" in payload else "ok"

    def pull(self, action: str = "PullSmsSendStatus", limit: int = 100) -> list[dict[str, Any]]:
        return self.call(action, {"Limit": limit, "SmsSdkAppId": APP})[
            "PullSmsSendStatusSet" if action == "PullSmsSendStatus" else "PullSmsReplyStatusSet"]

    def drain(self, action: str = "PullSmsSendStatus") -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        while page := self.pull(action):
            records += page
        return records

    def admin(self, method: str, path: str, json: Any = None) -> httpx.Response:
        return self.http.request(method, path, json=json)

    def close(self) -> None:
        self.http.close()


def sdk_client(sim: Simulator, *, secret_id: str = DEMO_SECRET_ID, secret_key: str = DEMO_SECRET_KEY,
               **profile_attributes: Any):
    """The official SmsClient pointed at the simulator; keyword arguments set ClientProfile attributes."""
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.sms.v20210111 import sms_client

    profile = ClientProfile(httpProfile=HttpProfile(endpoint=sim.url.split("//", 1)[1], protocol="http", reqTimeout=10))
    for name, value in profile_attributes.items():
        setattr(profile, name, value)
    return sms_client.SmsClient(credential.Credential(secret_id, secret_key), "ap-guangzhou", profile)


def smsledger(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """`smsledger ARGS` in a subprocess, with none of the machine's SMSLEDGER_/TENCENTCLOUD_
    variables or proxies, only `env`."""
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_")) and not k.lower().endswith("_proxy")}
    return subprocess.run([sys.executable, "-m", "pipelines.app.cli", *args], env={**base, **(env or {})},
                          cwd=cwd or REPO, capture_output=True, text=True, timeout=timeout)


class Running:
    """A `smsledger` command running in its own process as a user starts it, its output (stdout
    and stderr) collected line by line as it comes."""

    def __init__(self, env: dict[str, str], *args: str, cwd: Path | None = None):
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-u", "-m", "pipelines.app.cli", *args], env=env,
                                        cwd=cwd or Path(__file__).resolve().parents[1],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float) -> bool:
        """Whether a line holding `text` came within `timeout` seconds (False if the command ended)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return True
            if self.process.poll() is not None:
                self._reader.join(timeout=5)
                return any(text in line for line in self.lines)
            time.sleep(0.05)
        return False

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def wait_for_pushes(sim: Simulator, timeout: float = 60) -> list[dict]:
    """Every push of a simulator answered (acknowledged or given up): with a frozen clock all fall
    due at once."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pushes = list(sim.state.truth_pushes())
        if pushes and all(p["acknowledged"] or len(p["attempts"]) >= 3 for p in pushes):
            time.sleep(0.5)
            if len(list(sim.state.truth_pushes())) == len(pushes):
                return pushes
        time.sleep(0.2)
    raise AssertionError("the simulator's pushes did not settle")


def expected_delivery(sim: Simulator, app: str, first: dt.date, last: dt.date) -> dict[tuple, tuple[int, ...]]:
    """Per send day (UTC) and country, one application's Ok messages of the days by their final
    receipt due by the simulator clock (the latest): (submitted, delivered, failed, pending)."""
    now = sim.state.now()
    counts: dict[tuple, list[int]] = {}
    for m in sim.state.truth_messages(sdk_app_id=app):
        day = dt.datetime.fromtimestamp(m["send_time"], dt.UTC).date()
        if m["code"] != "Ok" or not first <= day <= last:
            continue
        due = [r for r in m["receipts"] if r["user_receive_time"] <= now]
        status = max(due, key=lambda r: r["user_receive_time"])["report_status"] if due else None
        row = counts.setdefault((day, m["iso_code"]), [0, 0, 0, 0])
        row[0] += 1
        row[{"SUCCESS": 1, "FAIL": 2, None: 3}[status]] += 1
    return {key: tuple(row) for key, row in counts.items()}


def query(path: Path, sql: str, params: dict[str, Any] | None = None) -> list[tuple]:
    """The rows of one statement on a warehouse file, read-only, times in UTC."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("set time zone 'UTC'")
        return con.execute(sql, params or {}).fetchall()
    finally:
        con.close()
