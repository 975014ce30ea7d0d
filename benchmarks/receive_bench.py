"""Pushes and records per second that `smsledger receive` acknowledges on loopback:

    python -m benchmarks.receive_bench [--seconds 8] [--spool-dir DIR] [--runs 1] [--sdk-app-ids A,B]

For each case (records per push x concurrent connections) a fresh receiver is started as the real
command in a child process, with its spool in a new folder (under --spool-dir, default the system
temp folder: say which filesystem, since every push costs an fsync of a file and of its folder).
One asyncio client in this process keeps its connections busy with the same status push (keep-
alive, raw sockets: the client's cost stays small next to the receiver's) for --seconds, and
counts the 200 answers. Reported per case: acknowledged pushes/s and records/s, the receiver's CPU
seconds (user + system, from /proc) and per 1,000 pushes, the client's CPU seconds, and the files
found in the spool afterwards (must equal the acknowledged pushes). With --sdk-app-ids the receiver
serves those applications and the pushes go to the first one's URL (`/status/<SmsSdkAppId>`);
without, to the one application's `/status`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from pipelines.simulator.bench import _cpu_seconds

TOKEN = "bench_token_0123456789abcdef"
CASES = ((100, 16), (1, 16), (100, 1))  # (records per push, connections)


def _status_push(records: int) -> bytes:
    return orjson.dumps([{"user_receive_time": "2026-11-30 08:03:04", "nationcode": "86", "mobile": "18501234444",
                          "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功",
                          "sid": f"5000:{i:030d}", "ext": "otp:1930356"} for i in range(records)])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding `path`, from /proc/mounts (longest mount point)."""
    best, kind = "", "unknown"
    real = str(path.resolve())
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _, point, fstype, *_ = line.split()
            if (real == point or real.startswith(point.rstrip("/") + "/")) and len(point) > len(best):
                best, kind = point, fstype
    return f"{kind} ({best})"


async def _connection(port: int, request: bytes, deadline: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        while time.perf_counter() < deadline:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            counts[0 if head.startswith(b"HTTP/1.1 200 ") else 1] += 1
    finally:
        writer.close()


async def _storm(port: int, request: bytes, connections: int, seconds: float) -> tuple[int, int]:
    counts = [0, 0]  # acknowledged, other answers
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_connection(port, request, deadline, counts) for _ in range(connections)))
    return counts[0], counts[1]


def run_case(records: int, connections: int, seconds: float, spool_root: Path, sdk_app_ids: str = "") -> dict:
    body = _status_push(records)
    path = f"/status/{sdk_app_ids.split(',')[0]}" if sdk_app_ids else "/status"
    request = (f"POST /callbacks/{TOKEN}{path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    spool_dir = Path(tempfile.mkdtemp(prefix="receive-bench-", dir=spool_root))
    port = _free_port()
    env = {**os.environ, "SMSLEDGER_CALLBACK_TOKEN": TOKEN, "SMSLEDGER_SPOOL_DIR": str(spool_dir),
           "SMSLEDGER_CALLBACK_MAX_CONNECTIONS": str(max(256, connections * 2)),
           **({"SMSLEDGER_SDK_APP_ID": sdk_app_ids} if sdk_app_ids else {})}
    receiver = subprocess.Popen([sys.executable, "-m", "pipelines.app.cli", "receive", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if receiver.poll() is not None:
                    raise RuntimeError("the receiver did not start") from None
                time.sleep(0.05)
        receiver_cpu = _cpu_seconds(receiver.pid)
        client_cpu = _own_cpu()
        started = time.perf_counter()
        acknowledged, other = asyncio.run(_storm(port, request, connections, seconds))
        elapsed = time.perf_counter() - started
        receiver_cpu = _cpu_seconds(receiver.pid) - receiver_cpu
        client_cpu = _own_cpu() - client_cpu
    finally:
        receiver.terminate()
        receiver.wait(30)
    spooled = len(os.listdir(spool_dir / "ready"))
    shutil.rmtree(spool_dir)
    return {"records_per_push": records, "connections": connections, "seconds": elapsed, "acknowledged": acknowledged,
            "other_answers": other, "pushes_per_second": acknowledged / elapsed,
            "records_per_second": acknowledged * records / elapsed, "receiver_cpu_seconds": receiver_cpu,
            "receiver_cpu_ms_per_1000_pushes": receiver_cpu / max(acknowledged, 1) * 1e6,
            "client_cpu_seconds": client_cpu, "spooled_files": spooled, "body_bytes": len(body)}


def _own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--spool-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--sdk-app-ids", default="", help="the receiver's applications; pushes to the first one's URL")
    ns = parser.parse_args()
    ns.spool_dir.mkdir(parents=True, exist_ok=True)
    print(f"spool on {_filesystem(ns.spool_dir)}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}")
    for records, connections in CASES:
        results = [run_case(records, connections, ns.seconds, ns.spool_dir, ns.sdk_app_ids) for _ in range(ns.runs)]
        for r in results:
            assert r["spooled_files"] == r["acknowledged"], r
        median = {k: statistics.median(r[k] for r in results) for k in results[0]}
        print(f"{records:>3} records/push, {connections:>2} connections: {median['pushes_per_second']:8,.0f} pushes/s "
              f"{median['records_per_second']:10,.0f} records/s | receiver CPU {median['receiver_cpu_seconds']:.2f} s "
              f"({median['receiver_cpu_ms_per_1000_pushes']:.0f} ms per 1,000 pushes) | client CPU "
              f"{median['client_cpu_seconds']:.2f} s | {median['acknowledged']:.0f} acknowledged in "
              f"{median['seconds']:.1f} s, {median['other_answers']:.0f} other answers, body {median['body_bytes']:.0f} B")


if __name__ == "__main__":
    main()
