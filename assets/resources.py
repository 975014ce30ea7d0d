"""Dagster resources: the SMS API client, the warehouse and spool, the sending application's files.

Secrets enter only here, through `dg.EnvVar`, when Dagster builds the resource for a run; they are
never part of run config or metadata.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY, LakeLocation, ObjectStore, Settings, \
    Warehouse, is_lake, parse_lake_uri
from pipelines.tencent.actions import RATE_LIMITS
from pipelines.tencent.client import SmsApiClient
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.loader import LoadReport, load_spool
from pipelines.spool import Spool


class SmsApiResource(dg.ConfigurableResource):
    """The Tencent Cloud SMS API (or the simulator, by endpoint)."""

    endpoint: str
    secret_id: str
    secret_key: str
    session_token: str | None = None
    sdk_app_ids: list[str]  # the account's applications; each is drained, gap-filled and reconciled on its own
    region: str = "ap-guangzhou"
    provider_timezone: str = "Asia/Shanghai"
    timeout_seconds: float = 10.0
    rate_fraction: float = 0.9
    # Multiplies the documented per-action limits: for an account whose limits Tencent raised,
    # or a simulator started with the same --rate-scale.
    rate_limit_scale: float = 1.0
    workers: int = 4  # concurrent requests of a drain, gap filling or the statistics

    @classmethod
    def from_settings(cls, settings: Settings) -> SmsApiResource:
        """Keys from the environment through `dg.EnvVar` (read when a run starts); only the
        simulator's public demo keys, used when none are set for a loopback endpoint, are given
        as values."""
        if settings.demo_credentials:
            secret_id, secret_key, session_token = DEMO_SECRET_ID, DEMO_SECRET_KEY, None
        else:
            secret_id, secret_key = dg.EnvVar("TENCENTCLOUD_SECRET_ID"), dg.EnvVar("TENCENTCLOUD_SECRET_KEY")
            session_token = dg.EnvVar("TENCENTCLOUD_SESSION_TOKEN") if settings.session_token else None
        return cls(
            endpoint=settings.endpoint, secret_id=secret_id, secret_key=secret_key, session_token=session_token,
            sdk_app_ids=list(settings.sdk_app_ids), region=settings.region, provider_timezone=settings.provider_timezone,
            rate_limit_scale=settings.rate_limit_scale,
        )

    @contextlib.contextmanager
    def client(self, sdk_app_id: str | None = None) -> Iterator[SmsApiClient]:
        """A client of one application (default: the first)."""
        import httpx

        client = SmsApiClient(
            endpoint=self.endpoint,
            secret_id=self.secret_id,
            secret_key=self.secret_key,
            session_token=self.session_token or None,
            sdk_app_id=sdk_app_id or self.sdk_app_ids[0],
            region=self.region,
            provider_timezone=self.provider_timezone,
            timeout=httpx.Timeout(self.timeout_seconds, connect=min(5.0, self.timeout_seconds)),
            rate_fraction=self.rate_fraction,
            rate_limits={action: limit * self.rate_limit_scale for action, limit in RATE_LIMITS.items()},
        )
        try:
            yield client
        finally:
            client.close()


class WarehouseResource(dg.ConfigurableResource):
    """The warehouse (a DuckDB file, or a lake: its URI and data path) and the spool of raw
    responses waiting to be loaded. The object store's keys of an s3:// data path come from the
    environment (`dg.EnvVar`) when a run starts, never from run config."""

    path: str  # the DuckDB file, or the lake's ducklake:postgres:... URI (which never holds a password)
    spool_dir: str
    lake_data_path: str | None = None
    s3_key_id: str | None = None
    s3_secret: str | None = None
    s3_session_token: str | None = None
    s3_region: str | None = None
    s3_endpoint: str | None = None
    s3_use_ssl: bool = True
    s3_url_style: str | None = None
    # The zone of pushed receipts' local times, read when the spool is loaded.
    provider_timezone: str = "Asia/Shanghai"
    # The zone of the daily partitions (a pushed receipt's message has its send day there).
    partition_timezone: str = "UTC"
    lock_wait_seconds: float = 300.0
    # The first application: rows of a warehouse made before applications were told apart, push
    # callbacks and older spool files (which do not say their application) belong to it.
    first_sdk_app_id: str = DEMO_SDK_APP_ID
    # SMSLEDGER_PII_KEY: with it the marts hold keyed tokens of numbers instead of numbers
    # (pipelines/warehouse/marts.py). A secret: from the environment (`dg.EnvVar`) when a run starts.
    pii_key: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> WarehouseResource:
        warehouse = settings.warehouse
        lake: dict[str, object] = {}
        if isinstance(warehouse, LakeLocation):
            lake["lake_data_path"] = warehouse.data_path
            store = warehouse.object_store
            if store is not None:
                lake.update(
                    s3_key_id=dg.EnvVar("AWS_ACCESS_KEY_ID"), s3_secret=dg.EnvVar("AWS_SECRET_ACCESS_KEY"),
                    s3_session_token=dg.EnvVar("AWS_SESSION_TOKEN") if store.session_token else None,
                    s3_region=store.region, s3_endpoint=store.endpoint, s3_use_ssl=store.use_ssl,
                    s3_url_style=store.url_style)
        return cls(path=str(warehouse), spool_dir=str(settings.spool_dir), provider_timezone=settings.provider_timezone,
                   partition_timezone=settings.timezone, first_sdk_app_id=settings.sdk_app_id,
                   pii_key=dg.EnvVar("SMSLEDGER_PII_KEY") if settings.pii_key else None, **lake)

    @property
    def is_lake(self) -> bool:
        return is_lake(self.path)

    def location(self) -> Warehouse:
        """The DuckDB file's path, or the lake's location with its object store's credentials."""
        if not self.is_lake:
            return Path(self.path)
        store = None
        if self.s3_key_id and self.s3_secret:
            store = ObjectStore(key_id=self.s3_key_id, secret=self.s3_secret, session_token=self.s3_session_token or None,
                                region=self.s3_region, endpoint=self.s3_endpoint, use_ssl=self.s3_use_ssl,
                                url_style=self.s3_url_style)
        return parse_lake_uri(self.path, self.lake_data_path, store)

    def load_spool(self, con: duckdb.DuckDBPyConnection) -> LoadReport:
        """Every spooled response and push batch into the raw tables, one load at a time on this
        machine. On a DuckDB file the pool of one writer already makes it so; a lake takes several
        writers, but two loads of one spool would both insert the files neither had loaded yet
        (appends never conflict), so the second waits for the first, then finds what is left."""
        self.spool()  # its folders exist
        with open(Path(self.spool_dir) / "load.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return load_spool(con, self.spool(), provider_timezone=self.provider_timezone,
                                  sdk_app_id=self.first_sdk_app_id)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with open_warehouse(self.location(), wait_seconds=self.lock_wait_seconds,
                            sdk_app_id=self.first_sdk_app_id) as con:
            yield con

    def spool(self) -> Spool:
        return Spool(Path(self.spool_dir))


class SourcesResource(dg.ConfigurableResource):
    """Globs of the sending application's SendSms log and conversion events, and the price table
    (all optional)."""

    sends_path: str | None = None
    conversions_path: str | None = None
    prices_path: str | None = None  # SMSLEDGER_PRICES


class MetricsConfig(dg.ConfigurableResource):
    """Attribution windows and thresholds of the marts and checks. The windows come from
    `Settings`; the rest are knobs of the checks, settable in the UI's launchpad."""

    conversion_window_days: int = 7
    reply_window_hours: int = 72
    lookback_days: int = 3
    opt_out_words: list[str] = ["td", "t", "退订", "stop", "unsubscribe"]
    coverage_threshold: float = 0.95
    reconciliation_tolerance: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsConfig:
        return cls(conversion_window_days=settings.conversion_window_days,
                   reply_window_hours=settings.reply_window_hours, lookback_days=settings.lookback_days)


class PersonalDataConfig(dg.ConfigurableResource):
    """How long raw numbers stay in raw and staging (SMSLEDGER_PII_RETENTION_DAYS; None: for good)
    and what of the replies' texts is kept (SMSLEDGER_REPLY_TEXT), with the shortest retention that
    loses nothing the pipeline needs (texts go then when no retention is set)."""

    retention_days: int | None = None
    minimum_retention_days: int = 12
    reply_text: str = "keep"

    @classmethod
    def from_settings(cls, settings: Settings) -> PersonalDataConfig:
        return cls(retention_days=settings.pii_retention_days, reply_text=settings.reply_text,
                   minimum_retention_days=settings.pii_minimum_retention_days)
