"""Queue-pull throughput of the simulator on loopback:

    python -m pipelines.simulator.bench [--processes 1] [--threads 8] [--client httpx|raw] [--runs 3]

Each run starts a fresh simulator in a child process (7 days x 20,000 messages by default, rate
limits off) and drains its PullSmsSendStatus queue with `--processes` client processes of
`--threads` threads each. `httpx` clients are what smsledger uses (one keep-alive httpx.Client
per thread, every request signed); `raw` clients write signed requests on keep-alive sockets and
only read the bytes back, so they show what the server itself sustains. Reported: full
(Limit=100) pages per second from the start of the drain to the last full page, and the median
over the runs. The server's own CPU time per pull is printed too: on a small machine the clients
compete with the server for the same cores.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import threading
import time

import httpx
import orjson

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
from pipelines.tencent.signing import API_VERSION, authorization_header

_BODY = orjson.dumps({"Limit": 100, "SmsSdkAppId": DEMO_SDK_APP_ID})


def _serve(days: int, messages_per_day: int, port_out, stop) -> None:
    from pipelines.simulator.config import SimulatorConfig
    from pipelines.simulator.server import Simulator

    with Simulator(SimulatorConfig(port=0, days=days, messages_per_day=messages_per_day, rate_scale=0)) as sim:
        port_out.send(sim.port)
        stop.wait()


def _headers(host: str) -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json", "X-TC-Action": "PullSmsSendStatus", "X-TC-Version": API_VERSION,
        "X-TC-Region": "ap-guangzhou", "X-TC-Timestamp": str(timestamp),
        "Authorization": authorization_header(DEMO_SECRET_ID, DEMO_SECRET_KEY, timestamp, host, _BODY),
    }


def _full(body: bytes) -> bool:
    return body.count(b'"SerialNo"') >= 100


def _httpx_client(port: int, pages: list[float]) -> None:
    host = f"127.0.0.1:{port}"
    with httpx.Client(base_url=f"http://{host}", trust_env=False) as client:
        while _full(client.post("/", content=_BODY, headers=_headers(host)).content):
            pages.append(time.perf_counter())


def _raw_client(port: int, pages: list[float]) -> None:
    host = f"127.0.0.1:{port}"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while True:
            head = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(_BODY)}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in _headers(host).items()) + "\r\n"
            sock.sendall(head.encode() + _BODY)
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            end = buffer.index(b"\r\n\r\n") + 4
            length = int(buffer[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < end + length:
                buffer += sock.recv(65536)
            body, buffer = buffer[end : end + length], buffer[end + length :]
            if not _full(body):
                return
            pages.append(time.perf_counter())


def _client_process(kind: str, port: int, threads: int, barrier, results) -> None:
    pages: list[float] = []
    target = _raw_client if kind == "raw" else _httpx_client
    workers = [threading.Thread(target=target, args=(port, pages)) for _ in range(threads)]
    barrier.wait()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results.put(pages)


def run_once(kind: str, processes: int, threads: int, days: int, messages_per_day: int) -> tuple[float, int, float]:
    """(full pages per second, full pages, server CPU microseconds per page) of one drain."""
    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    server = ctx.Process(target=_serve, args=(days, messages_per_day, port_out, stop), daemon=True)
    server.start()
    try:
        port = port_in.recv()
        barrier = ctx.Barrier(processes + 1)
        results = ctx.Queue()
        clients = [ctx.Process(target=_client_process, args=(kind, port, threads, barrier, results))
                   for _ in range(processes)]
        for c in clients:
            c.start()
        cpu_before = _cpu_seconds(server.pid)
        barrier.wait()
        start = time.perf_counter()
        pages = [t for _ in clients for t in results.get()]
        cpu = _cpu_seconds(server.pid) - cpu_before
        for c in clients:
            c.join()
        return len(pages) / (max(pages) - start), len(pages), cpu / len(pages) * 1e6
    finally:
        stop.set()
        server.join(10)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--client", choices=("httpx", "raw"), default="httpx")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--messages-per-day", type=int, default=20000)
    ns = parser.parse_args()
    rates = []
    for i in range(ns.runs):
        rate, pages, server_us = run_once(ns.client, ns.processes, ns.threads, ns.days, ns.messages_per_day)
        rates.append(rate)
        print(f"run {i + 1}: {pages} full pages, {rate:,.0f} pulls/s, server CPU {server_us:,.0f} us/pull")
    print(f"median: {statistics.median(rates):,.0f} pulls/s ({ns.client}, {ns.processes} process(es) x "
          f"{ns.threads} threads, Limit=100)")


if __name__ == "__main__":
    main()
