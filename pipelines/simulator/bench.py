"""Queue-pull throughput and memory of the simulator on loopback:

    python -m pipelines.simulator.bench [--processes 1] [--threads 8] [--client httpx|raw] [--runs 3]
    python -m pipelines.simulator.bench --scale [--messages-per-day 1000000] [--days 1] [--threads 4]

Each run starts a fresh simulator in a child process (7 days x 20,000 messages by default, rate
limits off) and drains its PullSmsSendStatus queue with `--processes` client processes of
`--threads` threads each. `httpx` clients are what smsledger uses (one keep-alive httpx.Client
per thread, every request signed); `raw` clients write signed requests on keep-alive sockets and
only read the bytes back, so they show what the server itself sustains. Reported: full
(Limit=100) pages per second from the start of the drain to the last full page, and the median
over the runs. The server's own CPU time per pull is printed too: on a small machine the clients
compete with the server for the same cores.

`--scale` measures what a large account costs: a simulator in a child process (frozen clock at the
end of the traffic, files written to a temporary folder) reports its RSS and wall/CPU seconds to
start; raw clients then drain both queues (to the first short page) and the report adds the
drain's wall seconds, the server's CPU seconds, its RSS after the drain and its peak RSS.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import threading
import time
from pathlib import Path

import httpx
import orjson

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
from pipelines.tencent.signing import API_VERSION, authorization_header

_BODY = orjson.dumps({"Limit": 100, "SmsSdkAppId": DEMO_SDK_APP_ID})


def _serve(days: int, messages_per_day: int, port_out, stop, frozen: bool = False) -> None:
    import tempfile

    from pipelines.simulator.config import SimulatorConfig
    from pipelines.simulator.server import Simulator

    started, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out_dir:
        options = {"out_dir": Path(out_dir), "now": time.time(), "clock_runs": False} if frozen else {}
        with Simulator(SimulatorConfig(port=0, days=days, messages_per_day=messages_per_day, rate_scale=0,
                                       **options)) as sim:
            port_out.send((sim.port, time.perf_counter() - started, time.process_time() - cpu))
            stop.wait()


def _headers(host: str, action: str = "PullSmsSendStatus") -> dict[str, str]:
    timestamp = int(time.time())
    return {
        "Content-Type": "application/json", "X-TC-Action": action, "X-TC-Version": API_VERSION,
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


def _raw_client(port: int, pages: list[float], action: str = "PullSmsSendStatus",
                counts: list[int] | None = None) -> None:
    host = f"127.0.0.1:{port}"
    marker = b'"SerialNo"' if action == "PullSmsSendStatus" else b'"ReplyTime"'
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buffer = b""
        while True:
            head = f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(_BODY)}\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in _headers(host, action).items()) + "\r\n"
            sock.sendall(head.encode() + _BODY)
            while b"\r\n\r\n" not in buffer:
                buffer += sock.recv(65536)
            end = buffer.index(b"\r\n\r\n") + 4
            length = int(buffer[:end].lower().split(b"content-length:")[1].split(b"\r\n")[0])
            while len(buffer) < end + length:
                buffer += sock.recv(65536)
            body, buffer = buffer[end : end + length], buffer[end + length :]
            records = body.count(marker)
            if counts is not None:
                counts.append(records)
            if records < 100:
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
        port, _, _ = port_in.recv()
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


def run_scale(days: int, messages_per_day: int, threads: int) -> dict[str, float]:
    """Start a frozen-clock simulator in a child process, drain both queues with raw clients;
    wall and CPU seconds and RSS of the server at each step."""
    ctx = multiprocessing.get_context("spawn")
    port_in, port_out = ctx.Pipe(duplex=False)
    stop = ctx.Event()
    launched = time.perf_counter()
    server = ctx.Process(target=_serve, args=(days, messages_per_day, port_out, stop, True), daemon=True)
    server.start()
    try:
        port, start_wall, start_cpu = port_in.recv()
        report = {"messages": days * messages_per_day, "start_wall_s": start_wall, "start_cpu_s": start_cpu,
                  "process_up_s": time.perf_counter() - launched, "rss_after_start_mib": _rss_mib(server.pid)}
        cpu_before = _cpu_seconds(server.pid)
        drained = time.perf_counter()
        for action in ("PullSmsSendStatus", "PullSmsReplyStatus"):
            counts: list[int] = []
            workers = [threading.Thread(target=_raw_client, args=(port, [], action, counts)) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            report["receipts" if action == "PullSmsSendStatus" else "replies"] = sum(counts)
        report["drain_wall_s"] = time.perf_counter() - drained
        report["drain_server_cpu_s"] = _cpu_seconds(server.pid) - cpu_before
        report["rss_after_drain_mib"] = _rss_mib(server.pid)
        report["peak_rss_mib"] = _rss_mib(server.pid, "VmHWM")
        return report
    finally:
        stop.set()
        server.join(60)


def _rss_mib(pid: int, field: str = "VmRSS") -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise ValueError(f"no {field} in /proc/{pid}/status")


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
    parser.add_argument("--days", type=int, help="days of traffic (default 7; with --scale 1)")
    parser.add_argument("--messages-per-day", type=int, help="default 20,000; with --scale 1,000,000")
    parser.add_argument("--scale", action="store_true",
                        help="memory and time to start and to drain (defaults then: 1 day, 1,000,000 messages)")
    ns = parser.parse_args()
    if ns.scale:
        report = run_scale(ns.days or 1, ns.messages_per_day or 1_000_000, ns.threads)
        print(" ".join(f"{k}={v:,.1f}" if isinstance(v, float) else f"{k}={v:,}" for k, v in report.items()))
        return
    rates = []
    for i in range(ns.runs):
        rate, pages, server_us = run_once(ns.client, ns.processes, ns.threads, ns.days or 7,
                                          ns.messages_per_day or 20000)
        rates.append(rate)
        print(f"run {i + 1}: {pages} full pages, {rate:,.0f} pulls/s, server CPU {server_us:,.0f} us/pull")
    print(f"median: {statistics.median(rates):,.0f} pulls/s ({ns.client}, {ns.processes} process(es) x "
          f"{ns.threads} threads, Limit=100)")


if __name__ == "__main__":
    main()
