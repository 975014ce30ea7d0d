"""The simulator's configuration: `SimulatorConfig`, from the command line and the environment.

Credentials and the application ids come from TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY /
SMSLEDGER_SDK_APP_ID when set (so a client configured for the simulator needs no other
settings), else the public demo values of `pipelines.config`. SMSLEDGER_SDK_APP_ID and
`--sdk-app-id` may list several applications, comma-separated: each gets traffic of its own
(`catalog.APP_PROFILES`: different volumes and mixes), its own queues, archive and statistics.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY, ConfigError
from pipelines.simulator.faults import FaultPlan, FaultSpecError


@dataclasses.dataclass
class SimulatorConfig:
    host: str = "127.0.0.1"
    port: int = 8765  # 0: any free port
    seed: int = 7
    days: int = 7
    messages_per_day: int = 2000
    faults: str = ""  # grammar in pipelines/simulator/faults.py
    rate_scale: float = 1.0  # multiplies the documented per-action limits; 0 disables them
    secret_id: str = DEMO_SECRET_ID
    secret_key: str = dataclasses.field(default=DEMO_SECRET_KEY, repr=False)
    sdk_app_id: str = DEMO_SDK_APP_ID  # one application; the first of `sdk_app_ids` when those are given
    sdk_app_ids: tuple[str, ...] = ()  # several applications of the account (empty: just `sdk_app_id`)
    out_dir: Path | None = None  # where to write sends.ndjson and conversions.ndjson
    now: float | None = None  # the simulator clock at start (default: real time); traffic ends here
    provider_timezone: str = "Asia/Shanghai"  # zone of the statistics' yyyymmddhh hours
    clock_runs: bool = True  # False: the clock moves only through /_sim/clock (deterministic tests)
    callback_url: str | None = None  # push receipts to URL/status[/app] and replies to URL/reply (see `push`)
    callback_retry_seconds: float = 5.0  # real seconds between the attempts of a failed push
    callback_timeout_seconds: float = 5.0  # an attempt without an answer by then has failed
    pushed_also_queued: bool = True  # False: pushing takes the records; the pull queues hand out nothing

    def __post_init__(self) -> None:
        self.sdk_app_ids = tuple(self.sdk_app_ids)
        if self.sdk_app_ids:
            self.sdk_app_id = self.sdk_app_ids[0]
        if not all(self.app_ids) or len(set(self.app_ids)) != len(self.app_ids):
            raise ConfigError(f"SmsSdkAppId list {','.join(self.app_ids)!r}: ids must be non-empty and distinct")
        if self.callback_url is not None and not self.callback_url.startswith(("http://", "https://")):
            raise ConfigError(f"--callback-url {self.callback_url!r}: expected an http:// or https:// URL")
        if self.callback_retry_seconds < 0 or self.callback_timeout_seconds <= 0:
            raise ConfigError("--callback-retry-seconds must not be negative, and the push timeout must be positive")

    @property
    def app_ids(self) -> tuple[str, ...]:
        """The account's applications, the first one being `sdk_app_id`."""
        return self.sdk_app_ids or (self.sdk_app_id,)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> SimulatorConfig:
        env = os.environ if env is None else env
        secret_id = env.get("TENCENTCLOUD_SECRET_ID", "").strip()
        secret_key = env.get("TENCENTCLOUD_SECRET_KEY", "").strip()
        if bool(secret_id) != bool(secret_key):
            missing = "TENCENTCLOUD_SECRET_KEY" if secret_id else "TENCENTCLOUD_SECRET_ID"
            raise ConfigError(f"set {missing} too, or neither (the simulator then uses its demo keys)")
        fields = {
            "secret_id": secret_id or DEMO_SECRET_ID,
            "secret_key": secret_key or DEMO_SECRET_KEY,
            "sdk_app_ids": app_id_list(env.get("SMSLEDGER_SDK_APP_ID", "")) or (DEMO_SDK_APP_ID,),
            "provider_timezone": env.get("SMSLEDGER_PROVIDER_TIMEZONE", "").strip() or "Asia/Shanghai",
        }
        return cls(**{**fields, **overrides})


def app_id_list(text: str) -> tuple[str, ...]:
    """Application ids from a comma-separated list ("" gives none)."""
    return tuple(part.strip() for part in text.split(",")) if text.strip() else ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimulatorConfig()
    parser.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    parser.add_argument("--port", type=int, default=d.port, help=f"port, 0 for any free one (default {d.port})")
    parser.add_argument("--seed", type=int, default=d.seed, help=f"traffic seed (default {d.seed})")
    parser.add_argument("--days", type=int, default=d.days, help=f"days of traffic before now (default {d.days})")
    parser.add_argument("--messages-per-day", type=int, default=d.messages_per_day,
                        help=f"messages sent per day (default {d.messages_per_day})")
    parser.add_argument("--faults", default="", metavar="SPEC",
                        help="faults to inject, e.g. 'PullSmsSendStatus:http500=0.05,truncate=0.03;*:dirty=0.1'")
    parser.add_argument("--rate-scale", type=float, default=d.rate_scale,
                        help="multiplier of the documented per-action rate limits; 0 disables them (default 1)")
    parser.add_argument("--sdk-app-id", type=app_id_list, default=(), metavar="ID[,ID...]",
                        help="the account's SmsSdkAppIds, comma-separated (default: SMSLEDGER_SDK_APP_ID, else the demo's)")
    parser.add_argument("--callback-url", default=None, metavar="URL",
                        help="push receipts (POST URL/status, arrays of up to 100; URL/status/SmsSdkAppId with "
                             "several applications) and replies (POST URL/reply) as they fall due; a failed push "
                             "is retried twice more")
    parser.add_argument("--callback-retry-seconds", type=float, default=d.callback_retry_seconds, metavar="S",
                        help=f"seconds between the attempts of a failed push (default {d.callback_retry_seconds:g})")
    parser.add_argument("--pushed-also-queued", action=argparse.BooleanOptionalAction, default=d.pushed_also_queued,
                        help="with --callback-url, whether pushed records also stay in the pull queues "
                             "(undocumented for the real service; default: yes)")
    parser.add_argument("--out-dir", type=lambda text: Path(text) if text else None, default=Path("data/simulator"),
                        help="where to write sends.ndjson and conversions.ndjson; '' for nowhere (default data/simulator)")


def config_from_args(ns: argparse.Namespace, env: Mapping[str, str] | None = None) -> SimulatorConfig:
    try:
        FaultPlan.parse(ns.faults)
    except FaultSpecError as exc:
        raise ConfigError(f"--faults: {exc}") from None
    return SimulatorConfig.from_env(
        env, host=ns.host, port=ns.port, seed=ns.seed, days=ns.days, messages_per_day=ns.messages_per_day,
        faults=ns.faults, rate_scale=ns.rate_scale, out_dir=ns.out_dir, callback_url=ns.callback_url,
        callback_retry_seconds=ns.callback_retry_seconds, pushed_also_queued=ns.pushed_also_queued,
        **({"sdk_app_ids": ns.sdk_app_id} if ns.sdk_app_id else {}),
    )
