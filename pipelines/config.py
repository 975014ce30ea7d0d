"""Settings: every variable smsledger reads, in one object, read once from the environment where a
command or the code location starts (never at import time of a library module), then passed down.
Nothing writes settings back into the environment.

Secrets are held here only long enough to build a client; `Settings.__repr__` hides them so a
settings object can be logged or put in an exception without leaking them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress
import math
import os
import re
import urllib.parse
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# The simulator's demo credentials. They are public on purpose: the simulator is a local
# stand-in, and these keys open nothing real.
DEMO_SECRET_ID = "AKIDsmsledgerDEMO0000000000000000000"
DEMO_SECRET_KEY = "smsledgerDEMOsecretKEY000000000000"
DEMO_SDK_APP_ID = "1400000000"

DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"
DEFAULT_DRAIN_CRON = "*/10 * * * *"
DEFAULT_DAILY_CRON = "30 0 * * *"
DEFAULT_PROVIDER_TIMEZONE = "Asia/Shanghai"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# The callback token is a path segment of the URL Tencent is given: unreserved characters only,
# and long enough that guessing it is hopeless.
_CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,256}")


def is_loopback(endpoint: str) -> bool:
    host = urllib.parse.urlsplit(endpoint).hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _is_cron(text: str) -> bool:
    if text in (DEFAULT_DRAIN_CRON, DEFAULT_DAILY_CRON):
        return True  # known valid: checking them would import Dagster (2 s) into every command
    from dagster._utils.schedules import is_valid_cron_string

    return is_valid_cron_string(text)


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable to set."""


def _networks(text: str | None, variable: str) -> tuple[IPNetwork, ...]:
    """Comma-separated CIDRs (a bare address is a /32 or /128); host bits are ignored."""
    networks = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ConfigError(f"{variable}: {part.strip()!r} is not an address or CIDR network "
                                  "(e.g. 203.0.113.0/24,2001:db8::/32)") from None
    return tuple(networks)


def _positive(text: str, variable: str, meaning: str, kind: type = int) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        value = 0
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"{variable}={text!r} must be {meaning} above 0")
    return value


def _callback_settings(get: Callable[..., str | None]) -> dict[str, Any]:
    """The fields of `smsledger receive`, checked."""
    token = get("SMSLEDGER_CALLBACK_TOKEN")
    if token is not None and not _CALLBACK_TOKEN.fullmatch(token):
        # the value is a secret: never repeated in the message
        raise ConfigError("SMSLEDGER_CALLBACK_TOKEN must be 16 to 256 characters of A-Z a-z 0-9 . _ ~ - "
                          "(e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(24))')")
    return {
        "callback_token": token,
        "callback_allow": _networks(get("SMSLEDGER_CALLBACK_ALLOW"), "SMSLEDGER_CALLBACK_ALLOW"),
        "callback_trusted_proxies": _networks(get("SMSLEDGER_CALLBACK_TRUSTED_PROXIES"),
                                              "SMSLEDGER_CALLBACK_TRUSTED_PROXIES"),
        "callback_max_body_bytes": _positive(get("SMSLEDGER_CALLBACK_MAX_BODY_BYTES", str(1 << 20)),
                                             "SMSLEDGER_CALLBACK_MAX_BODY_BYTES", "a whole number of bytes"),
        "callback_max_connections": _positive(get("SMSLEDGER_CALLBACK_MAX_CONNECTIONS", "256"),
                                              "SMSLEDGER_CALLBACK_MAX_CONNECTIONS", "a whole number"),
        "callback_timeout_seconds": _positive(get("SMSLEDGER_CALLBACK_TIMEOUT_SECONDS", "10"),
                                              "SMSLEDGER_CALLBACK_TIMEOUT_SECONDS", "a number of seconds", float),
    }


def _personal_data_settings(get: Callable[..., str | None]) -> dict[str, Any]:
    """Prices, and the handling of phone numbers and reply texts, checked."""
    key = get("SMSLEDGER_PII_KEY")
    if key is not None and len(key) < 16:
        # the value is a secret: never repeated in the message
        raise ConfigError("SMSLEDGER_PII_KEY must be at least 16 characters (e.g. python3 -c "
                          "'import secrets; print(secrets.token_urlsafe(32))'); keep it: tokens made with another key "
                          "do not match")
    retention = get("SMSLEDGER_PII_RETENTION_DAYS")
    if retention is not None:
        retention = _positive(retention, "SMSLEDGER_PII_RETENTION_DAYS", "a whole number of days")
    reply_text = get("SMSLEDGER_REPLY_TEXT", "keep")
    if reply_text not in ("keep", "optout-only", "drop"):
        raise ConfigError(f"SMSLEDGER_REPLY_TEXT={reply_text!r} must be keep, optout-only or drop")
    prices = get("SMSLEDGER_PRICES")
    return {"prices_path": Path(prices) if prices else None, "pii_key": key, "pii_retention_days": retention,
            "reply_text": reply_text}


# An SmsSdkAppId is the console's number of an application (e.g. 1400006666).
_SDK_APP_ID = re.compile(r"[0-9]{1,20}")


def _sdk_app_ids(text: str) -> tuple[str, ...]:
    """SMSLEDGER_SDK_APP_ID: one application id or several, comma-separated, distinct."""
    ids = tuple(part.strip() for part in text.split(","))
    for app in ids:
        if not _SDK_APP_ID.fullmatch(app):
            raise ConfigError(f"SMSLEDGER_SDK_APP_ID={text!r}: {app!r} is not an SmsSdkAppId (the digits of the "
                              "console, e.g. 1400006666; several are separated by commas)")
    if len(set(ids)) != len(ids):
        twice = next(app for app in ids if ids.count(app) > 1)
        raise ConfigError(f"SMSLEDGER_SDK_APP_ID={text!r}: {twice} is listed twice")
    return ids


def _zone(name: str, variable: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(f"{variable}={name!r} is not an IANA time zone (e.g. UTC, Asia/Shanghai)") from exc


@dataclasses.dataclass(frozen=True)
class Settings:
    secret_id: str = dataclasses.field(repr=False)
    secret_key: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    # The account's applications (SMSLEDGER_SDK_APP_ID, comma-separated), each drained, gap-filled
    # and reconciled on its own. The first is the one a warehouse made before several applications
    # were supported belongs to: its rows are given that id when the warehouse is upgraded.
    sdk_app_ids: tuple[str, ...] = (DEMO_SDK_APP_ID,)
    endpoint: str = DEFAULT_ENDPOINT
    region: str = "ap-guangzhou"
    warehouse: Path = Path("data/warehouse.duckdb")
    spool_dir: Path = Path("data/spool")
    sends_path: str | None = None
    conversions_path: str | None = None
    timezone: str = "UTC"
    provider_timezone: str = DEFAULT_PROVIDER_TIMEZONE
    start_date: dt.date = dt.date(2026, 1, 1)
    lookback_days: int = 3
    conversion_window_days: int = 7
    # Replies are attributed to a message delivered to the same number this many hours before.
    reply_window_hours: int = 72
    rate_limit_scale: float = 1.0
    drain_cron: str = DEFAULT_DRAIN_CRON
    daily_cron: str = DEFAULT_DAILY_CRON
    # True when no key pair was set and the endpoint is a loopback simulator: the public demo keys.
    demo_credentials: bool = False
    dagster_home: Path | None = None
    # `smsledger receive`: the secret path segment of the callback URLs, the source networks
    # allowed (empty: any), the proxies whose X-Forwarded-For / X-Real-IP are believed, and the
    # service's bounds.
    callback_token: str | None = dataclasses.field(default=None, repr=False)
    callback_allow: tuple[IPNetwork, ...] = ()
    callback_trusted_proxies: tuple[IPNetwork, ...] = ()
    callback_max_body_bytes: int = 1 << 20
    callback_max_connections: int = 256
    callback_timeout_seconds: float = 10.0
    # Spend: the CSV of unit prices (pipelines/warehouse/prices.py); without it costs are null.
    prices_path: Path | None = None
    # Phone numbers as personal data (pipelines/normalize/pii.py): the key of the tokens that stand
    # for numbers in the marts, how many days raw numbers stay in raw and staging, and what of the
    # replies' texts the marts keep.
    pii_key: str | None = dataclasses.field(default=None, repr=False)
    pii_retention_days: int | None = None
    reply_text: str = "keep"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, require_credentials: bool = True) -> Settings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name, "").strip()
            return value or default

        endpoint = get("SMSLEDGER_ENDPOINT", DEFAULT_ENDPOINT).rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(f"SMSLEDGER_ENDPOINT={endpoint!r} must start with http:// or https://")
        secret_id = get("TENCENTCLOUD_SECRET_ID")
        secret_key = get("TENCENTCLOUD_SECRET_KEY")
        demo_credentials = not (secret_id or secret_key) and is_loopback(endpoint)
        if demo_credentials:
            # A local simulator without keys of its own answers to the demo keys.
            secret_id, secret_key = DEMO_SECRET_ID, DEMO_SECRET_KEY
        if require_credentials and not (secret_id and secret_key):
            missing = [n for n, v in (("TENCENTCLOUD_SECRET_ID", secret_id), ("TENCENTCLOUD_SECRET_KEY", secret_key)) if not v]
            raise ConfigError(f"set {' and '.join(missing)} (the API key pair of your Tencent Cloud account; see .env.example)")
        timezone = get("SMSLEDGER_TIMEZONE", "UTC")
        provider_timezone = get("SMSLEDGER_PROVIDER_TIMEZONE", DEFAULT_PROVIDER_TIMEZONE)
        _zone(timezone, "SMSLEDGER_TIMEZONE")
        _zone(provider_timezone, "SMSLEDGER_PROVIDER_TIMEZONE")
        start = get("SMSLEDGER_START_DATE", "2026-01-01")
        try:
            start_date = dt.date.fromisoformat(start)
        except ValueError as exc:
            raise ConfigError(f"SMSLEDGER_START_DATE={start!r} is not a date (YYYY-MM-DD)") from exc
        days = {}
        for name, default in (("SMSLEDGER_LOOKBACK_DAYS", "3"), ("SMSLEDGER_CONVERSION_WINDOW_DAYS", "7")):
            value = get(name, default)
            if not value.isdigit():
                raise ConfigError(f"{name}={value!r} must be a whole number of days")
            days[name] = int(value)
        scale = get("SMSLEDGER_RATE_LIMIT_SCALE", "1")
        try:
            rate_limit_scale = float(scale)
        except ValueError:
            rate_limit_scale = -1.0
        if not rate_limit_scale > 0:
            raise ConfigError(f"SMSLEDGER_RATE_LIMIT_SCALE={scale!r} must be a number above 0 (1: the documented limits)")
        crons = {name: get(name, default) for name, default in
                 (("SMSLEDGER_DRAIN_CRON", DEFAULT_DRAIN_CRON), ("SMSLEDGER_DAILY_CRON", DEFAULT_DAILY_CRON))}
        for name, cron in crons.items():
            if not _is_cron(cron):
                raise ConfigError(f"{name}={cron!r} is not a cron schedule (e.g. '30 0 * * *')")
        dagster_home = get("DAGSTER_HOME")
        # A simulator's records must never mix with a real account's: against a loopback endpoint
        # the default warehouse and spool are the simulator's own, beside the files it writes.
        data = Path("data/simulator") if is_loopback(endpoint) else Path("data")
        settings = cls(
            secret_id=secret_id or "",
            secret_key=secret_key or "",
            session_token=get("TENCENTCLOUD_SESSION_TOKEN"),
            sdk_app_ids=_sdk_app_ids(get("SMSLEDGER_SDK_APP_ID", DEMO_SDK_APP_ID)),
            endpoint=endpoint,
            region=get("SMSLEDGER_REGION", "ap-guangzhou"),
            warehouse=Path(get("SMSLEDGER_WAREHOUSE", str(data / "warehouse.duckdb"))),
            spool_dir=Path(get("SMSLEDGER_SPOOL_DIR", str(data / "spool"))),
            sends_path=get("SMSLEDGER_SENDS_PATH"),
            conversions_path=get("SMSLEDGER_CONVERSIONS_PATH"),
            timezone=timezone,
            provider_timezone=provider_timezone,
            start_date=start_date,
            lookback_days=days["SMSLEDGER_LOOKBACK_DAYS"],
            conversion_window_days=days["SMSLEDGER_CONVERSION_WINDOW_DAYS"],
            rate_limit_scale=rate_limit_scale,
            drain_cron=crons["SMSLEDGER_DRAIN_CRON"],
            daily_cron=crons["SMSLEDGER_DAILY_CRON"],
            demo_credentials=demo_credentials,
            dagster_home=Path(dagster_home) if dagster_home else None,
            **_callback_settings(get),
            **_personal_data_settings(get),
        )
        if settings.pii_retention_days is not None and settings.pii_retention_days < settings.pii_minimum_retention_days:
            raise ConfigError(
                f"SMSLEDGER_PII_RETENTION_DAYS={settings.pii_retention_days} must be at least "
                f"{settings.pii_minimum_retention_days}: the daily run rebuilds {settings.rematerialize_days} days before "
                f"yesterday, a reply is attributed up to {settings.reply_window_days} days after its message, and gap "
                "filling asks by number 7 days back")
        return settings

    @property
    def sdk_app_id(self) -> str:
        """The first application: the one rows loaded before applications were told apart belong to."""
        return self.sdk_app_ids[0]

    @property
    def rematerialize_days(self) -> int:
        """Days before yesterday that the daily run builds again: the receipt lookback, and the
        conversion window, since a conversion reported days later still counts for its message."""
        return max(self.lookback_days, self.conversion_window_days)

    @property
    def pii_minimum_retention_days(self) -> int:
        """The shortest SMSLEDGER_PII_RETENTION_DAYS that loses nothing the pipeline needs: gap
        filling asks by number 7 days back (and a day more for a receipt without a usable time),
        the daily run rebuilds `rematerialize_days` days before yesterday, and a reply reaches back
        `reply_window_days` to the delivery it answers (plus today, still open)."""
        return max(8, self.rematerialize_days + self.reply_window_days + 2)

    @property
    def reply_window_days(self) -> int:
        """Whole days a reply may reach back to the message it answers."""
        return -(-self.reply_window_hours // 24)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def provider_tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.provider_timezone)
