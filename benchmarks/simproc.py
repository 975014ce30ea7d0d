"""The simulator in a child process, so that the clients being measured do not share a GIL (or a
core's worth of event loop) with it. Like `pipelines.simulator.bench`, which does this for its own
raw-socket and httpx clients with rate limits off; this one takes any `SimulatorConfig` fields.

    with simulator_process(days=7, messages_per_day=30_000, rate_scale=1) as sim:
        sim.url, sim.pid, sim.stats()
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import time
from collections.abc import Iterator

import httpx

from pipelines.simulator.bench import _cpu_seconds


def _serve(config: dict, port_out, stop) -> None:
    from pipelines.simulator.config import SimulatorConfig
    from pipelines.simulator.server import Simulator

    with Simulator(SimulatorConfig(port=0, **config)) as sim:
        port_out.send(sim.port)
        stop.wait()


@dataclasses.dataclass
class SimProcess:
    url: str
    pid: int
    startup_seconds: float

    def stats(self) -> dict:
        """/_sim/stats: requests per action, errors per code, queue positions."""
        return httpx.get(f"{self.url}/_sim/stats", timeout=30, trust_env=False).json()

    def cpu_seconds(self) -> float:
        return _cpu_seconds(self.pid)


@contextlib.contextmanager
def simulator_process(**config) -> Iterator[SimProcess]:
    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    started = time.perf_counter()
    server = ctx.Process(target=_serve, args=(config, port_out, stop), daemon=True)
    server.start()
    try:
        if not port_in.poll(600):
            raise RuntimeError("the simulator did not start within 600s")
        port = port_in.recv()
        yield SimProcess(f"http://127.0.0.1:{port}", server.pid, time.perf_counter() - started)
    finally:
        stop.set()
        server.join(30)
        if server.is_alive():
            server.terminate()
            server.join(10)
