"""The Tencent Cloud SMS API client (2021-01-11): signed calls over httpx, bounded retries,
per-action rate limits, and the provider's paging rules.

Three kinds of calls with different failure semantics:

* Queue pulls (`PullSmsSendStatus`, `PullSmsReplyStatus`) hand each record out once. The client
  returns the raw response bytes *unparsed* (`RawPage`) so the caller can put them on disk first,
  and it never retries a pull whose response did not arrive whole: such a pull is *indeterminate*
  (records may have left the queue), and only the caller, which counts and heals such losses, may
  decide to pull again.
* By-number pulls are re-readable within 7 days, with `Offset` fixed at 0 and `Limit` <= 100, so a
  full page means "split the window and ask again".
* Everything else is an ordinary idempotent read: retried on transient faults.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx
import orjson

from pipelines.config import Settings, is_loopback
from pipelines.normalize.timestamps import provider_hour_string
from pipelines.tencent import actions as A
from pipelines.tencent.envelope import Page, parse_page, parse_response
from pipelines.tencent.errors import TencentCloudError, TransportError, Unreachable, WindowTooOldError
from pipelines.tencent.ratelimit import RateLimiter
from pipelines.tencent.signing import API_VERSION, CONTENT_TYPE, TC3Auth

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in attempts."""

    max_attempts: int = 5
    base_seconds: float = 0.2
    max_seconds: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_seconds, self.base_seconds * 2**attempt))


@dataclasses.dataclass(frozen=True)
class Statistics:
    """The counters of a statistics action over a range of hours, and the request ids that gave them."""

    counters: dict[str, int]
    request_ids: list[str]


@dataclasses.dataclass(frozen=True)
class RawPage:
    """One response of a queue pull, as bytes. `body` is None when no complete response arrived:
    the pull is indeterminate and `failure` says why."""

    action: str
    body: bytes | None
    received_at: float
    elapsed_seconds: float
    failure: str | None = None

    @property
    def indeterminate(self) -> bool:
        return self.body is None


class SmsApiClient:
    """A thread-safe client for one SMS application (`SmsSdkAppId`)."""

    def __init__(
        self,
        *,
        endpoint: str,
        secret_id: str,
        secret_key: str,
        sdk_app_id: str,
        region: str = "ap-guangzhou",
        session_token: str | None = None,
        provider_timezone: str = "Asia/Shanghai",
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        retry: RetryPolicy = RetryPolicy(),
        rate_limits: Mapping[str, float] | None = None,
        rate_fraction: float = 0.9,
        max_connections: int = 32,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ):
        self.endpoint = endpoint.rstrip("/")
        self.sdk_app_id = sdk_app_id
        self.region = region
        self.provider_tz = ZoneInfo(provider_timezone)
        self.retry = retry
        self.limiter = RateLimiter(A.RATE_LIMITS if rate_limits is None else rate_limits, fraction=rate_fraction, sleep=sleep)
        self._clock = clock
        self._sleep = sleep
        self._rng = random.Random(seed)
        self._rng_lock = threading.Lock()
        self._http = httpx.Client(
            base_url=self.endpoint,
            auth=TC3Auth(secret_id, secret_key, session_token, clock=clock),
            timeout=timeout,
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Content-Type": CONTENT_TYPE, "X-TC-Version": API_VERSION, "X-TC-Region": region},
            # Proxies and CA bundles from the environment apply to the real service, never to a
            # loopback simulator (a proxy would not reach it).
            trust_env=not is_loopback(self.endpoint),
        )

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> SmsApiClient:
        """A client of the first application, or of `sdk_app_id=` given."""
        kwargs.setdefault("sdk_app_id", settings.sdk_app_id)
        return cls(
            endpoint=settings.endpoint,
            secret_id=settings.secret_id,
            secret_key=settings.secret_key,
            session_token=settings.session_token,
            region=settings.region,
            provider_timezone=settings.provider_timezone,
            **kwargs,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> SmsApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------

    def backoff(self, attempt: int) -> None:
        """Sleep before retry number `attempt` (1-based), with full jitter; thread-safe."""
        with self._rng_lock:
            delay = self.retry.delay(attempt - 1, self._rng)
        self._sleep(delay)

    def _retrying(self, action: str, attempt_once: Callable[[], T]) -> T:
        """`attempt_once()` until it succeeds, fails permanently, or the attempts run out: transport
        faults and retryable provider codes are tried again, nothing else."""
        attempt = 0
        while True:
            try:
                return attempt_once()
            except (TransportError, TencentCloudError) as exc:
                retryable = isinstance(exc, TransportError) or exc.retryable
                if isinstance(exc, TencentCloudError) and exc.code.startswith("RequestLimitExceeded"):
                    self.limiter.throttled(action)
                attempt += 1
                if not retryable or attempt >= self.retry.max_attempts:
                    raise
                log.warning("%s; retry %d/%d", exc, attempt, self.retry.max_attempts - 1)
                self.backoff(attempt)

    def _post_once(self, action: str, params: Mapping[str, Any]) -> bytes:
        """One rate-limited, signed POST. Returns the whole body of an HTTP 200, else raises
        Unreachable (the request never left) or TransportError (a timeout, a reset, 5xx, a body
        cut short: the request may have been served)."""
        self.limiter.acquire(action)
        body = orjson.dumps(params)
        try:
            response = self._http.post("/", content=body, headers={"X-TC-Action": action})
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.ProxyError, httpx.UnsupportedProtocol) as exc:
            raise Unreachable(action, self.endpoint, f"{exc.__class__.__name__}: {exc or 'connection failed'}") from None
        except httpx.TimeoutException as exc:
            raise TransportError(action, f"timed out ({exc.__class__.__name__})") from None
        except httpx.HTTPError as exc:
            raise TransportError(action, f"{exc.__class__.__name__}: {exc or 'connection failed'}") from None
        if response.status_code != 200:
            raise TransportError(action, f"HTTP {response.status_code}", status_code=response.status_code)
        return response.content

    def call(self, action: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One action, retried on transient faults; returns the `Response` object. Queue pulls go
        through `pull_queue_raw`: a retried queue pull would hand out more records while the ones
        in the failed response are gone."""
        if action in A.QUEUE_ACTIONS:
            raise ValueError(f"{action} is a queue: use pull_queue_raw, which never retries and keeps the bytes")
        params = dict(params or {})
        return self._retrying(action, lambda: parse_response(action, self._post_once(action, params)))

    # -- queue pulls -----------------------------------------------------------------------

    def pull_queue_raw(self, action: str, limit: int = A.MAX_LIMIT) -> RawPage:
        """One queue pull, unparsed. Never retried here: see the module docstring. Raises
        Unreachable when the request never left this machine."""
        if action not in A.QUEUE_ACTIONS:
            raise ValueError(f"{action} is not a queue action")
        _check_limit(limit)
        started = time.monotonic()
        try:
            body = self._post_once(action, {"Limit": limit, "SmsSdkAppId": self.sdk_app_id})
        except Unreachable:
            raise  # nothing was handed out: not indeterminate
        except TransportError as exc:
            return RawPage(action, None, self._clock(), time.monotonic() - started, failure=exc.cause)
        return RawPage(action, body, self._clock(), time.monotonic() - started)

    # -- by-number pulls -------------------------------------------------------------------

    def by_number_pages(
        self, action: str, phone_number: str, begin: int, end: int, *, limit: int = A.MAX_LIMIT
    ) -> Iterator[tuple[bytes, Page]]:
        """Every record of one number in [begin, end] (unix seconds, inclusive), as the pages that
        hold them: a full page is split into two halves and asked again, since `Offset` is fixed at
        0. Yields (raw body, parsed page) for pages with fewer than `limit` records, and for a full
        page of a one-second window, which cannot be split further (logged)."""
        if action not in A.BY_NUMBER_ACTIONS:
            raise ValueError(f"{action} is not a by-number action")
        _check_limit(limit)
        if end < begin:
            raise ValueError(f"EndTime {end} is before BeginTime {begin}")
        oldest = int(self._clock()) - A.BY_NUMBER_RETENTION_SECONDS
        if begin < oldest:
            raise WindowTooOldError(
                f"{action}: BeginTime {_iso(begin)} is more than 7 days ago (oldest allowed {_iso(oldest)}); "
                "the provider keeps by-number data for 7 days only"
            )
        windows = [(begin, end)]
        while windows:
            lo, hi = windows.pop()
            params = {
                "BeginTime": lo,
                "Offset": 0,
                "Limit": limit,
                "PhoneNumber": phone_number,
                "SmsSdkAppId": self.sdk_app_id,
                "EndTime": hi,
            }
            body, page = self._retrying(action, lambda: self._read_page(action, params))
            if len(page.records) >= limit and hi > lo:
                mid = (lo + hi) // 2
                windows.extend([(mid + 1, hi), (lo, mid)])  # older half first
                continue
            if len(page.records) >= limit:
                log.warning("%s: %s has %d+ records in the one second %s; some may be missing",
                            action, phone_number, limit, _iso(lo))
            yield body, page

    def _read_page(self, action: str, params: dict[str, Any]) -> tuple[bytes, Page]:
        body = self._post_once(action, params)
        return body, parse_page(action, body)

    # -- statistics ------------------------------------------------------------------------

    def send_status_statistics(self, begin: dt.datetime, end: dt.datetime) -> Statistics:
        """SendStatusStatistics over the provider hours from `begin`'s hour to `end`'s hour."""
        response = self.call(A.SEND_STATUS_STATISTICS, self.statistics_params(begin, end))
        return Statistics(_counts(response["SendStatusStatistics"]), [str(response.get("RequestId", ""))])

    def callback_status_statistics(self, begin: dt.datetime, end: dt.datetime) -> Statistics:
        """CallbackStatusStatistics over the hours from `begin` to `end`; ranges longer than the
        provider's 32 days are asked in pieces and summed (every field is a count)."""
        totals: dict[str, int] = {}
        request_ids: list[str] = []
        for lo, hi in _split_range(begin, end, dt.timedelta(days=A.CALLBACK_STATISTICS_MAX_DAYS)):
            response = self.call(A.CALLBACK_STATUS_STATISTICS, self.statistics_params(lo, hi))
            for key, value in _counts(response["CallbackStatusStatistics"]).items():
                totals[key] = totals.get(key, 0) + value
            request_ids.append(str(response.get("RequestId", "")))
        return Statistics(totals, request_ids)

    def statistics_params(self, begin: dt.datetime, end: dt.datetime) -> dict[str, Any]:
        b, e = provider_hour_string(begin, self.provider_tz), provider_hour_string(end, self.provider_tz)
        if e < b:
            raise ValueError(f"statistics end {end.isoformat()} is before begin {begin.isoformat()}")
        return {"BeginTime": b, "EndTime": e, "SmsSdkAppId": self.sdk_app_id, "Limit": 0, "Offset": 0}

    # -- the other actions -----------------------------------------------------------------

    def describe_sign_list(self, international: int, sign_ids: list[int] | None = None) -> list[dict[str, Any]]:
        return self._describe(A.DESCRIBE_SIGN_LIST, "SignIdSet", "DescribeSignListStatusSet", international, sign_ids)

    def describe_template_list(self, international: int, template_ids: list[int] | None = None) -> list[dict[str, Any]]:
        return self._describe(A.DESCRIBE_TEMPLATE_LIST, "TemplateIdSet", "DescribeTemplateStatusSet", international, template_ids)

    def _describe(self, action: str, id_field: str, set_field: str, international: int, ids: list[int] | None) -> list[dict[str, Any]]:
        """All entries: by id in batches of 100, or every entry by Limit/Offset paging."""
        out: list[dict[str, Any]] = []
        if ids:
            for i in range(0, len(ids), A.MAX_LIMIT):
                out += self.call(action, {"International": international, id_field: ids[i : i + A.MAX_LIMIT]})[set_field] or []
            return out
        offset = 0
        while True:
            page = self.call(action, {"International": international, "Limit": A.MAX_LIMIT, "Offset": offset})[set_field] or []
            out += page
            if len(page) < A.MAX_LIMIT:
                return out
            offset += len(page)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= A.MAX_LIMIT:
        raise ValueError(f"Limit must be between 1 and {A.MAX_LIMIT}, got {limit}")


def _counts(fields: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(value) for key, value in fields.items()}


def _iso(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _split_range(begin: dt.datetime, end: dt.datetime, span: dt.timedelta) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Consecutive [lo, hi] hour ranges covering [begin, end], each at most `span` apart."""
    lo = begin
    while True:
        hi = min(end, lo + span - dt.timedelta(hours=1))
        yield lo, hi
        if hi >= end:
            return
        lo = hi + dt.timedelta(hours=1)
