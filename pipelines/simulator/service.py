"""One simulated SMS service: traffic, state, credentials, rate limits and faults, answering HTTP
requests for the Tencent API (`POST /`) and for the simulator's own admin routes (`/_sim/...`).

Every API answer is HTTP 200 with `Content-Type: application/json` exactly (the official SDK
ignores `Response.Error` under any other content type) and the envelope
`{"Response": {..., "RequestId": uuid}}`, except for the injected HTTP-level faults. The order of
checks for a request: common headers and signature (`auth`), the per-action rate limit (a rolling
second of real time, `RATE_LIMITS` x `rate_scale`; `rate_scale` 0 turns limits off), the
injected request-level fault if one is drawn, the JSON body (`FailedOperation.JsonParseFail`, or
`InvalidParameter` for valid JSON that is not an object), then the action (`api`).

Only `POST /` with a JSON body is simulated; the real service also takes GET with signed query
strings, which this one answers with `UnsupportedProtocol`.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import random
import time
import uuid
import zoneinfo
from collections.abc import Mapping
from typing import TYPE_CHECKING

import orjson

from pipelines.simulator import admin, api, auth
from pipelines.simulator.catalog import APP_PROFILES
from pipelines.simulator.faults import INTERNAL_ERRORS, NO_FAULTS, FaultPlan
from pipelines.simulator.push import Pusher
from pipelines.simulator.state import SimState
from pipelines.simulator.traffic import generate_traffic
from pipelines.simulator.wire import HttpConnection, Request
from pipelines.tencent.actions import RATE_LIMITS

if TYPE_CHECKING:
    from pipelines.simulator.config import SimulatorConfig

log = logging.getLogger(__name__)

JSON = "application/json"
_RATE_LIMIT_MESSAGE = "Your current request frequency exceeds the limit, please try again later."
_GATEWAY_PAGES = {
    500: b"<html><head><title>500 Internal Server Error</title></head><body><center><h1>500 Internal Server Error"
         b"</h1></center><hr><center>nginx</center></body></html>",
    502: b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
         b"<hr><center>nginx</center></body></html>",
    503: b"<html><head><title>503 Service Temporarily Unavailable</title></head><body><center><h1>503 Service "
         b"Temporarily Unavailable</h1></center><hr><center>nginx</center></body></html>",
}


class RateLimiter:
    """Per-action limit over a rolling second of real (monotonic) time."""

    def __init__(self, limits: Mapping[str, float], scale: float):
        self.limits = {action: limit * scale for action, limit in limits.items()} if scale > 0 else {}
        self._windows: dict[str, collections.deque[float]] = collections.defaultdict(collections.deque)

    def allow(self, action: str) -> bool:
        limit = self.limits.get(action)
        if limit is None:
            return True
        now = time.monotonic()
        window = self._windows[action]
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= limit:
            return False
        window.append(now)
        return True


@dataclasses.dataclass
class Stats:
    requests: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # per action
    errors: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # per Error.Code
    faults: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # per injected kind
    admin: collections.Counter = dataclasses.field(default_factory=collections.Counter)  # per admin path

    def to_json(self) -> dict:
        return {"requests": dict(self.requests), "errors": dict(self.errors), "faults": dict(self.faults),
                "admin": dict(self.admin)}


class Service:
    def __init__(self, config: SimulatorConfig):
        self.config = config
        start = time.time() if config.now is None else config.now
        apps = [generate_traffic(config.seed, config.days, config.messages_per_day, start, sdk_app_id=app_id,
                                 ordinal=i, profile=APP_PROFILES[i % len(APP_PROFILES)])
                for i, app_id in enumerate(config.app_ids)]
        self.provider_tz = zoneinfo.ZoneInfo(config.provider_timezone)
        self.state = SimState(apps, start=start, clock_runs=config.clock_runs, out_dir=config.out_dir,
                              seed=config.seed + 1, provider_tz=self.provider_tz, pushing=bool(config.callback_url),
                              pushed_also_queued=config.pushed_also_queued)
        self.pusher = (Pusher(self.state, config.callback_url, retry_seconds=config.callback_retry_seconds,
                              timeout_seconds=config.callback_timeout_seconds) if config.callback_url else None)
        self.credentials = {config.secret_id: config.secret_key}
        self.limiter = RateLimiter(RATE_LIMITS, config.rate_scale)
        self.plan = FaultPlan.parse(config.faults) if config.faults else NO_FAULTS
        self.fault_rng = random.Random(config.seed + 2)
        self.stats = Stats()
        self.connections: set[HttpConnection] = set()
        self.state.write_files()

    def start_pushing(self) -> None:
        if self.pusher is not None:
            self.pusher.start()

    def close(self) -> None:
        if self.pusher is not None:
            self.pusher.close()

    def protocol(self) -> HttpConnection:
        return HttpConnection(self.handle, self.connections)

    def set_faults(self, spec: str) -> FaultPlan:
        self.plan = FaultPlan.parse(spec)
        return self.plan

    def handle(self, conn: HttpConnection, request: Request) -> None:
        try:
            if request.path.startswith("/_sim/"):
                self.stats.admin[request.path] += 1
                status, payload = admin.route(self, request)
                if isinstance(payload, admin.Stream):
                    conn.send_stream(status, payload.chunks(), JSON, keep_alive=request.keep_alive)
                else:
                    conn.send(status, orjson.dumps(payload), JSON, keep_alive=request.keep_alive)
            elif request.path == "/":
                self._api(conn, request)
            else:
                conn.send(404, b"404 page not found", "text/plain", keep_alive=request.keep_alive)
        except Exception:
            log.exception("simulator: unhandled error on %s %s", request.method, request.target)
            self._error(conn, request, "InternalError", "internal error", str(uuid.uuid4()))

    def _error(self, conn: HttpConnection, request: Request, code: str, message: str, request_id: str) -> None:
        self.stats.errors[code] += 1
        conn.send(200, api.error_envelope(code, message, request_id), JSON, keep_alive=request.keep_alive)

    def _api(self, conn: HttpConnection, request: Request) -> None:
        request_id = str(uuid.uuid4())
        self.stats.requests[request.headers.get("x-tc-action") or "-"] += 1
        if request.method != "POST":
            return self._error(conn, request, "UnsupportedProtocol",
                               "The simulator accepts POST with a JSON body (TC3-HMAC-SHA256) only.", request_id)
        try:
            action = auth.check_request(request.headers, request.body, self.credentials)
        except auth.AuthError as exc:
            return self._error(conn, request, exc.code, exc.message, request_id)
        if not self.limiter.allow(action):
            return self._error(conn, request, "RequestLimitExceeded", _RATE_LIMIT_MESSAGE, request_id)

        fault = self.plan.draw(action, self.fault_rng) if self.plan.rules else None
        if fault:
            self.stats.faults[fault] += 1
        if fault in ("http500", "http502", "http503"):
            status = int(fault[4:])
            conn.send(status, _GATEWAY_PAGES[status], "text/html", keep_alive=request.keep_alive)
            return None
        if fault == "ratelimit":
            return self._error(conn, request, "RequestLimitExceeded", _RATE_LIMIT_MESSAGE, request_id)
        if fault == "internal":
            code, message = INTERNAL_ERRORS[int(self.fault_rng.random() * len(INTERNAL_ERRORS))]
            return self._error(conn, request, code, message, request_id)
        if fault == "reset" and self.fault_rng.random() < 0.5:
            conn.reset()
            return None

        try:
            params = orjson.loads(request.body)
        except orjson.JSONDecodeError:
            return self._error(conn, request, "FailedOperation.JsonParseFail", "The request body is not valid JSON.",
                               request_id)
        if not isinstance(params, dict):
            return self._error(conn, request, "InvalidParameter", "The request body must be a JSON object.",
                               request_id)
        ctx = api.Context(self.state, self.provider_tz, request_id,
                          self.plan.probability(action, "dirty"))
        try:
            result = api.handle(action, params, ctx)
        except api.ApiError as exc:
            return self._error(conn, request, exc.code, exc.message, request_id)

        handed = result.handed
        body = result.body
        if fault in ("truncate", "reset"):
            cut = 1 + int(self.fault_rng.random() * (len(body) - 1))
            if fault == "truncate":
                conn.send_truncated(200, body, JSON, cut)
            else:
                conn.send_then_reset(200, body, JSON, cut)
            if handed:
                self.state.settle(handed, delivered=False)
        elif fault == "slow":

            def settle(delivered: bool) -> None:
                if handed:
                    self.state.settle(handed, delivered)

            conn.send_later(self.plan.slow_seconds_for(action), 200, body, JSON, keep_alive=request.keep_alive,
                            on_done=settle)
        else:
            delivered = conn.send(200, body, JSON, keep_alive=request.keep_alive)
            if handed:
                self.state.settle(handed, delivered)
        return None
