"""Settings: every variable smsledger reads, in one object, read once from the environment where a
command or the code location starts (never at import time of a library module), then passed down.
Nothing writes settings back into the environment.

Secrets are held here only long enough to build a client; `Settings.__repr__` hides them so a
settings object can be logged or put in an exception without leaking them.

The warehouse is a DuckDB file (the default) or a DuckLake: a catalog in Postgres named by libpq
key=value words, its data as Parquet files in a folder or object storage. Its location is read
here, once, so that a bad one is one line naming the variable before anything runs; connecting is
pipelines/warehouse/db.py's. The catalog's password never travels in SMSLEDGER_WAREHOUSE (which is
logged, and which DuckDB repeats in its errors): libpq reads it from PGPASSWORD, a password file or
a service file by itself.
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


# -- the warehouse: a DuckDB file or a DuckLake ---------------------------------------------------

LAKE_SCHEME = "ducklake:postgres:"


class LakeConfigError(ConfigError):
    """A lake that cannot be named or opened, as one line that never holds a password."""


@dataclasses.dataclass(frozen=True)
class ObjectStore:
    """The S3 (or S3-compatible) credentials and endpoint of a lake whose data path is s3://, as
    the options of a DuckDB secret kept in the session only. From the AWS variables."""

    key_id: str = dataclasses.field(repr=False)
    secret: str = dataclasses.field(repr=False)
    session_token: str | None = dataclasses.field(default=None, repr=False)
    region: str | None = None
    endpoint: str | None = None  # host[:port] of an S3-compatible service; None: AWS
    use_ssl: bool = True
    url_style: str | None = None  # "path" for most S3-compatible services

    def secret_options(self) -> dict[str, str | bool]:
        options: dict[str, str | bool] = {"key_id": self.key_id, "secret": self.secret}
        for name in ("session_token", "region", "endpoint", "url_style"):
            if getattr(self, name):
                options[name] = getattr(self, name)
        if self.endpoint:
            options["use_ssl"] = self.use_ssl
        return options


@dataclasses.dataclass(frozen=True)
class LakeLocation:
    """Where a lake is: the catalog's libpq connection words (never a password), the data path
    (None: the one the catalog recorded when it was created), and the object store's credentials
    for an s3:// data path. Its text is the URI, safe to log."""

    conninfo: str
    data_path: str | None = None
    object_store: ObjectStore | None = dataclasses.field(default=None, compare=False)

    def __str__(self) -> str:
        return LAKE_SCHEME + self.conninfo


Warehouse = Path | LakeLocation


def is_lake(warehouse: object) -> bool:
    return isinstance(warehouse, LakeLocation) or str(warehouse).startswith("ducklake:")


# libpq's key=value syntax: a value is a bare word or a single-quoted string with \' and \\.
_WORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)")


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """The keys and values of libpq key=value connection words (values unquoted)."""
    words: dict[str, str] = {}
    position = 0
    while position < len(conninfo.rstrip()):
        match = _WORD.match(conninfo, position)
        if match is None:
            # Only the keys read so far are named: the unreadable rest may hold a secret.
            after = f"after {', '.join(words)} " if words else ""
            raise LakeConfigError(
                f"SMSLEDGER_WAREHOUSE: cannot read the connection words {after}(character {position + 1} after "
                f"{LAKE_SCHEME!r}): expected key=value words, e.g. {LAKE_SCHEME}dbname=smsledger host=db.internal "
                "port=5432 user=smsledger")
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        words[key] = value
        position = match.end()
    return words


def parse_lake_uri(uri: str, data_path: str | Path | None = None, object_store: ObjectStore | None = None) -> LakeLocation:
    """A LakeLocation from SMSLEDGER_WAREHOUSE and SMSLEDGER_LAKE_DATA_PATH; one-line errors that
    never repeat a password."""
    if not uri.startswith(LAKE_SCHEME):
        raise LakeConfigError(
            f"SMSLEDGER_WAREHOUSE: a lake is named {LAKE_SCHEME}dbname=... host=... port=... user=... "
            f"(a catalog in Postgres), not {redact(uri)!r}")
    conninfo = uri[len(LAKE_SCHEME):].strip()
    if conninfo.startswith(("postgres://", "postgresql://")):
        raise LakeConfigError(
            "SMSLEDGER_WAREHOUSE: give the catalog as libpq key=value words (dbname=... host=... user=...), not a URL")
    words = parse_conninfo(conninfo)
    if "password" in words:
        raise LakeConfigError(
            "SMSLEDGER_WAREHOUSE must not carry the password (it is logged and repeated in errors): "
            "set PGPASSWORD, or use a password file (PGPASSFILE) or a service file (PGSERVICEFILE with service=NAME)")
    if "dbname" not in words and "service" not in words:
        raise LakeConfigError("SMSLEDGER_WAREHOUSE: name the catalog's database with dbname=... (or a service=...)")
    return LakeLocation(conninfo, lake_data_path(data_path), object_store)


def lake_data_path(value: str | Path | None) -> str | None:
    """An absolute folder or an s3:// URL, ending in '/' (DuckLake appends file names)."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    if re.match(r"^[a-z][a-z0-9+.-]*://", text):
        if not text.startswith("s3://") or len(text) <= len("s3://"):
            raise LakeConfigError(f"SMSLEDGER_LAKE_DATA_PATH: {text!r} is neither a folder nor an s3://bucket/prefix URL")
        return text.rstrip("/") + "/"
    return str(Path(text).expanduser().resolve()) + "/"


_SECRET = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s'\"]+)", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]+:)[^@\s]+@", re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with any password=... word or user:password@ of a URL masked: DuckDB repeats the
    whole connection string in its errors."""
    return _URL_PASSWORD.sub(r"\1***@", _SECRET.sub(r"\1***", text))


def _object_store(get: Callable[..., str | None]) -> ObjectStore:
    """The credentials of an s3:// data path, from the variables the AWS tools read."""
    key_id, secret = get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
    if not (key_id and secret):
        raise ConfigError("SMSLEDGER_LAKE_DATA_PATH is an s3:// URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                          "(and AWS_REGION; AWS_ENDPOINT_URL for an S3-compatible service)")
    endpoint = get("AWS_ENDPOINT_URL_S3") or get("AWS_ENDPOINT_URL")
    host, use_ssl = None, True
    if endpoint:
        parts = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"AWS_ENDPOINT_URL={endpoint!r} must be http(s)://host[:port]")
        host, use_ssl = parts.netloc, parts.scheme == "https"
    return ObjectStore(key_id=key_id, secret=secret, session_token=get("AWS_SESSION_TOKEN"),
                       region=get("AWS_REGION") or get("AWS_DEFAULT_REGION"), endpoint=host, use_ssl=use_ssl,
                       url_style="path" if host else None)


def _warehouse(get: Callable[..., str | None], default: Path) -> Warehouse:
    """SMSLEDGER_WAREHOUSE: a DuckDB file (the default) or a lake, with SMSLEDGER_LAKE_DATA_PATH."""
    value = get("SMSLEDGER_WAREHOUSE", str(default))
    data_path = get("SMSLEDGER_LAKE_DATA_PATH")
    if not is_lake(value):
        if data_path:
            raise ConfigError("SMSLEDGER_LAKE_DATA_PATH is set but SMSLEDGER_WAREHOUSE is a DuckDB file: name a lake "
                              f"({LAKE_SCHEME}dbname=... host=... user=...) or unset it")
        return Path(value)
    location = parse_lake_uri(value, data_path)
    if location.data_path and location.data_path.startswith("s3://"):
        location = dataclasses.replace(location, object_store=_object_store(get))
    return location


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


# A retention or grace beyond a century is a typo, and would overflow datetime arithmetic.
MAX_RETENTION_DAYS = 36500


def retention_amount(text: str) -> float | None:
    """A number of days or hours from 0 to MAX_RETENTION_DAYS, or None (nan and inf included)."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 <= value <= MAX_RETENTION_DAYS else None


def _snapshot_retention_days(text: str) -> float:
    days = retention_amount(text)
    if days is None:
        raise ConfigError(f"SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS={text!r} must be a number of days from 0 to "
                          f"{MAX_RETENTION_DAYS} (e.g. 7; 0 keeps only the newest snapshot)")
    return days


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
    # A DuckDB file, or a lake (LakeLocation: its catalog, data path and object-store credentials).
    warehouse: Warehouse = Path("data/warehouse.duckdb")
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
    # Lake maintenance (pipelines/warehouse/maintenance.py): snapshots older than this many days are
    # expired, and time travel to them ends; 0 keeps only the newest.
    lake_snapshot_retention_days: float = 7.0

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
            warehouse=_warehouse(get, data / "warehouse.duckdb"),
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
            lake_snapshot_retention_days=_snapshot_retention_days(get("SMSLEDGER_LAKE_SNAPSHOT_RETENTION_DAYS", "7")),
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
    def lake_snapshot_retention(self) -> dt.timedelta:
        return dt.timedelta(days=self.lake_snapshot_retention_days)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def provider_tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.provider_timezone)
