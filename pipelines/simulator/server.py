"""Running the simulator: its configuration, an in-process `Simulator` for tests and the demo
(a background thread on a loopback port), and `serve` for `smsledger simulator`.

    with Simulator(SimulatorConfig(port=0, messages_per_day=500)) as sim:
        sim.url          # http://127.0.0.1:PORT, the SMSLEDGER_ENDPOINT of a client
        sim.state        # the ground truth, in process
        sim.advance(3600)

Credentials and the application id come from TENCENTCLOUD_SECRET_ID / TENCENTCLOUD_SECRET_KEY /
SMSLEDGER_SDK_APP_ID when set (so a client configured for the simulator needs no other
settings), else the public demo values of `pipelines.config`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY, ConfigError
from pipelines.simulator.faults import FaultPlan, FaultSpecError
from pipelines.simulator.service import Service
from pipelines.simulator.state import SimState


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
    sdk_app_id: str = DEMO_SDK_APP_ID
    out_dir: Path | None = None  # where to write sends.ndjson and conversions.ndjson
    now: float | None = None  # the simulator clock at start (default: real time); traffic ends here
    provider_timezone: str = "Asia/Shanghai"  # zone of the statistics' yyyymmddhh hours
    clock_runs: bool = True  # False: the clock moves only through /_sim/clock (deterministic tests)

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
            "sdk_app_id": env.get("SMSLEDGER_SDK_APP_ID", "").strip() or DEMO_SDK_APP_ID,
            "provider_timezone": env.get("SMSLEDGER_PROVIDER_TIMEZONE", "").strip() or "Asia/Shanghai",
        }
        return cls(**{**fields, **overrides})


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
    parser.add_argument("--out-dir", type=lambda text: Path(text) if text else None, default=Path("data/simulator"),
                        help="where to write sends.ndjson and conversions.ndjson; '' for nowhere (default data/simulator)")


def config_from_args(ns: argparse.Namespace, env: Mapping[str, str] | None = None) -> SimulatorConfig:
    try:
        FaultPlan.parse(ns.faults)
    except FaultSpecError as exc:
        raise ConfigError(f"--faults: {exc}") from None
    return SimulatorConfig.from_env(
        env, host=ns.host, port=ns.port, seed=ns.seed, days=ns.days, messages_per_day=ns.messages_per_day,
        faults=ns.faults, rate_scale=ns.rate_scale, out_dir=ns.out_dir,
    )


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _shutdown(server: asyncio.AbstractServer, service: Service) -> None:
    server.close()
    for conn in list(service.connections):
        conn.transport.abort()
    await asyncio.wait_for(server.wait_closed(), 5)


class Simulator:
    """The simulated service on a background thread; a context manager."""

    def __init__(self, config: SimulatorConfig | None = None, **overrides):
        self.config = dataclasses.replace(config or SimulatorConfig(), **overrides)
        self.service = Service(self.config)
        self.port = self.config.port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    @property
    def state(self) -> SimState:
        return self.service.state

    def start(self) -> Simulator:
        loop = _new_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                server = loop.run_until_complete(
                    loop.create_server(self.service.protocol, self.config.host, self.config.port, backlog=1024))
            except BaseException as exc:
                failure.append(exc)
                started.set()
                loop.close()
                return
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            loop.run_forever()
            loop.run_until_complete(_shutdown(server, self.service))
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"smsledger-simulator:{self.config.port}", daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            raise failure[0]
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def set_faults(self, spec: str) -> None:
        self.service.set_faults(spec)

    def advance(self, seconds: float) -> float:
        return self.state.advance(seconds)


def serve(config: SimulatorConfig) -> None:
    """Serve in the foreground until SIGINT or SIGTERM."""
    service = Service(config)
    loop = _new_loop()
    asyncio.set_event_loop(loop)
    try:
        server = loop.run_until_complete(loop.create_server(service.protocol, config.host, config.port, backlog=1024))
    except OSError as exc:
        loop.close()
        raise ConfigError(f"cannot listen on {config.host}:{config.port} ({exc.strerror}); choose another --port") from None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, loop.stop)
    port = server.sockets[0].getsockname()[1]
    url = f"http://{config.host}:{port}"
    key = config.secret_key if config.secret_key == DEMO_SECRET_KEY else "<your TENCENTCLOUD_SECRET_KEY>"
    files = (f"files {config.out_dir / 'sends.ndjson'} and {config.out_dir / 'conversions.ndjson'}"
             if config.out_dir else "no files (no --out-dir)")
    print(f"smsledger simulator: serving Tencent Cloud SMS 2021-01-11 at {url} "
          f"(SMSLEDGER_ENDPOINT={url} TENCENTCLOUD_SECRET_ID={config.secret_id} TENCENTCLOUD_SECRET_KEY={key} "
          f"SMSLEDGER_SDK_APP_ID={config.sdk_app_id}); {files}; admin at {url}/_sim/stats", flush=True)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(_shutdown(server, service))
        loop.close()
