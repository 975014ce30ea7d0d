"""Running the simulator: an in-process `Simulator` for tests and the demo (a background thread
on a loopback port), and `serve` for `smsledger simulator`. Its configuration is in `config`.

    with Simulator(SimulatorConfig(port=0, messages_per_day=500)) as sim:
        sim.url          # http://127.0.0.1:PORT, the SMSLEDGER_ENDPOINT of a client
        sim.state        # the ground truth, in process
        sim.advance(3600)
"""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import threading

from pipelines.config import DEMO_SECRET_KEY, ConfigError
from pipelines.simulator.config import SimulatorConfig
from pipelines.simulator.service import Service
from pipelines.simulator.state import SimState


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
        self.service.start_pushing()
        return self

    def close(self) -> None:
        if self._thread is None:
            return
        self.service.close()
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
          f"SMSLEDGER_SDK_APP_ID={','.join(config.app_ids)}); {files}; admin at {url}/_sim/stats"
          + (f"; pushing to {config.callback_url}/status and /reply" if config.callback_url else ""), flush=True)
    service.start_pushing()
    try:
        loop.run_forever()
    finally:
        service.close()
        loop.run_until_complete(_shutdown(server, service))
        loop.close()
