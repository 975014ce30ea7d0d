"""The simulator's own routes, under `/_sim/`, outside the Tencent API and without auth: the
clock, the fault plan, counters, and the ground truth that tests and demos compare against.

    GET  /_sim/clock                      {"now": unix seconds, "runs": bool}
    POST /_sim/clock                      {"advance_seconds": N} or {"now": unix}; forward only;
                                          rewrites the sending application's files
    GET  /_sim/faults                     the current fault plan
    POST /_sim/faults                     {"spec": "..."} (grammar in `faults`)
    GET  /_sim/stats                      requests per action, errors per code, faults per kind,
                                          queue positions
    GET  /_sim/truth/messages[?app=ID]    every message sent, with its sdk_app_id, receipts, final
                                          status, conversion (every application, or one)
    GET  /_sim/truth/replies[?app=ID]     every reply (sdk_app_id, phone, sign, content, time,
                                          is_opt_out, caused_by)
    GET  /_sim/truth/handed_out           every pull response: sdk_app_id, action, request_id, outcome
                                          (delivered | lost | pending), records and dirty variants
    GET  /_sim/truth/statistics?begin=yyyymmddhh&end=yyyymmddhh[&app=ID]
                                          both statistics recomputed from the per-message truth
                                          (default: the first application)
    GET  /_sim/truth/reported_conversions what ReportConversion received
    GET  /_sim/truth/pushes               every push callback: sdk_app_id, kind (status | reply),
                                          sim_time, records, attempts (outcome of each) and
                                          whether it was acknowledged

Answers are JSON; the truth lists are JSON arrays streamed with chunked transfer encoding, made
batch by batch as the client reads them (a day of ten million messages is never held); errors
are 4xx with {"error": "..."}.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
import zoneinfo
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

from pipelines.simulator import api
from pipelines.simulator.faults import FaultPlan, FaultSpecError
from pipelines.simulator.state import ClockError, SimState
from pipelines.simulator.wire import Request


class Service(Protocol):
    """What the routes use of a running service (`service.Service`, which dispatches to them)."""

    state: SimState
    plan: FaultPlan
    stats: Any
    provider_tz: zoneinfo.ZoneInfo

    def set_faults(self, spec: str) -> FaultPlan: ...


@dataclasses.dataclass
class Stream:
    """An answer streamed as one JSON array of `items`."""

    items: Iterable[Any]
    batch: int = 1000

    def chunks(self) -> Iterator[bytes]:
        yield b"["
        separator = b""
        batch: list[bytes] = []
        for item in self.items:
            batch.append(orjson.dumps(item))
            if len(batch) >= self.batch:
                yield separator + b",".join(batch)
                separator, batch = b",", []
        if batch:
            yield separator + b",".join(batch)
        yield b"]"


def route(service: Service, request: Request) -> tuple[int, Any]:
    handler = _ROUTES.get((request.method, request.path))
    if handler is None:
        if any(path == request.path for _, path in _ROUTES):
            return 405, {"error": f"{request.method} is not allowed on {request.path}"}
        return 404, {"error": f"no route {request.path}; see pipelines/simulator/admin.py"}
    try:
        return 200, handler(service, request)
    except (ValueError, KeyError, TypeError) as exc:
        return 400, {"error": str(exc) or exc.__class__.__name__}


def _body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(request.body or b"{}")
    except orjson.JSONDecodeError:
        raise ValueError("the body is not JSON") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


def _clock(service: Service, request: Request) -> dict[str, Any]:
    return {"now": service.state.now(), "runs": service.state.clock.runs}


def _set_clock(service: Service, request: Request) -> dict[str, Any]:
    body = _body(request)
    try:
        if "advance_seconds" in body:
            service.state.advance(float(body["advance_seconds"]))
        elif "now" in body:
            service.state.set_now(float(body["now"]))
        else:
            raise ValueError('expected {"advance_seconds": N} or {"now": unix}')
    except ClockError as exc:
        raise ValueError(str(exc)) from None
    return _clock(service, request)


def _faults(service: Service, request: Request) -> dict[str, Any]:
    return service.plan.to_json()


def _set_faults(service: Service, request: Request) -> dict[str, Any]:
    spec = _body(request).get("spec")
    if not isinstance(spec, str):
        raise ValueError('expected {"spec": "..."}')
    try:
        return service.set_faults(spec).to_json()
    except FaultSpecError as exc:
        raise ValueError(str(exc)) from None


def _stats(service: Service, request: Request) -> dict[str, Any]:
    return {**service.stats.to_json(), "queues": service.state.queue_positions(), "now": service.state.now()}


def _truth_statistics(service: Service, request: Request) -> dict[str, Any]:
    query = urllib.parse.parse_qs(request.query)
    if "begin" not in query:
        raise ValueError("expected ?begin=yyyymmddhh[&end=yyyymmddhh] (provider time zone, both inclusive)")
    begin_text, end_text = query["begin"][0], query.get("end", query["begin"])[0]
    try:
        begin = api.hour_start(begin_text, service.provider_tz, "BeginTime")
        end = api.hour_start(end_text, service.provider_tz, "EndTime")
    except api.ApiError as exc:
        raise ValueError(exc.message) from None
    app = _app(service, request)
    return {"begin": begin_text, "end": end_text, **service.state.truth_statistics(begin, end + 3600, app)}


def _app(service: Service, request: Request) -> str | None:
    """The `app` query parameter: a configured SmsSdkAppId, or None (all, or the default)."""
    app = urllib.parse.parse_qs(request.query).get("app", [None])[0]
    if app is not None and app not in service.state.apps:
        raise ValueError(f"app {app!r} is not one of the configured SmsSdkAppIds {', '.join(service.state.apps)}")
    return app


_ROUTES = {
    ("GET", "/_sim/clock"): _clock,
    ("POST", "/_sim/clock"): _set_clock,
    ("GET", "/_sim/faults"): _faults,
    ("POST", "/_sim/faults"): _set_faults,
    ("GET", "/_sim/stats"): _stats,
    ("GET", "/_sim/truth/messages"): lambda service, request: Stream(
        service.state.truth_messages(_app(service, request))),
    ("GET", "/_sim/truth/replies"): lambda service, request: Stream(service.state.truth_replies(_app(service, request))),
    ("GET", "/_sim/truth/handed_out"): lambda service, request: Stream(service.state.truth_handed_out()),
    ("GET", "/_sim/truth/statistics"): _truth_statistics,
    ("GET", "/_sim/truth/pushes"): lambda service, request: Stream(service.state.truth_pushes()),
    ("GET", "/_sim/truth/reported_conversions"): lambda service, request: list(service.state.reported_conversions),
}
