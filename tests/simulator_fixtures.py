"""Helpers shared by the simulator tests: signed raw requests (with the project's own signer, not
the client under development) and the official SDK pointed at a running simulator."""

from __future__ import annotations

import time
from typing import Any

import httpx
import orjson
import pytest

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.server import Simulator
from pipelines.tencent.signing import API_VERSION, authorization_header

APP = DEMO_SDK_APP_ID
SMALL = {"port": 0, "days": 7, "messages_per_day": 300, "seed": 11, "clock_runs": False}


def start(**overrides: Any) -> Simulator:
    return Simulator(SimulatorConfig(**{**SMALL, **overrides})).start()


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


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
