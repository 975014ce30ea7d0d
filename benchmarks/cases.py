"""The benchmarks. Each `bench_*` function runs in a fresh process (see `run.py`) and returns a
JSON-able dict: what was measured and how, the repetitions, and metrics as lists of values (the
report shows their median, min and max)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
KIB_PER_MIB = 1024


@dataclasses.dataclass
class Context:
    work: Path  # scratch space, removed by run.py unless --keep-data
    quick: bool
    log: Callable[[str], None]


def metric(name: str, values: list[float], unit: str, note: str = "") -> dict[str, Any]:
    values = [float(v) for v in values if v is not None]
    out: dict[str, Any] = {"name": name, "unit": unit, "values": values, "n": len(values), "note": note}
    if values:
        out.update(median=statistics.median(values), min=min(values), max=max(values))
    return out


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


# -- child processes with a memory watchdog -----------------------------------------------------


@dataclasses.dataclass
class ChildRun:
    returncode: int
    wall_seconds: float
    ru_maxrss_kib: int  # wait4() of the child: its own high-water mark (Linux reports KiB)
    max_sampled_rss_kib: int  # the watchdog's highest VmRSS sample (every 0.2 s)
    killed_for_memory: bool
    user_seconds: float
    system_seconds: float


def _vm_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_watched(cmd: list[str], *, rss_limit_kib: int, cwd: Path | None = None, env: dict | None = None,
                stdout=None) -> ChildRun:
    """Run `cmd`; SIGKILL it if its RSS goes over `rss_limit_kib` (the box is shared: an out-of-memory
    kill must hit this benchmark, not a neighbour)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=stdout)
    killed = False
    max_rss = 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        rss = _vm_rss_kib(proc.pid)
        max_rss = max(max_rss, rss)
        if rss > rss_limit_kib and not killed:
            os.kill(proc.pid, signal.SIGKILL)
            killed = True
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return ChildRun(proc.returncode, time.perf_counter() - started, usage.ru_maxrss, max_rss, killed,
                    usage.ru_utime, usage.ru_stime)


def mem_available_kib() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


# -- 1. normalize and load ----------------------------------------------------------------------

LOAD_SEED = 7
LOAD_DAYS = 7
SIZE_BUDGET_SECONDS = 600  # a size whose first repetition takes longer runs once


def bench_normalize_and_load(ctx: Context, n_receipts: int) -> dict:
    from benchmarks import load_child
    from benchmarks.receipts import GENERATOR_VERSION, generate

    label = f"{n_receipts // 1_000_000}m" if n_receipts >= 1_000_000 else f"{n_receipts // 1000}k"
    work = ctx.work / f"receipts-{n_receipts}"
    data = work / "data"
    manifest_path = data / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else None
    notes = []
    if manifest and manifest.get("generator_version") == GENERATOR_VERSION and manifest.get("seed") == LOAD_SEED:
        ctx.log(f"reusing the generated data in {data}")
        notes.append(f"input reused from an earlier generation ({manifest['seconds']:.0f}s then)")
    else:
        _rmtree(data)
        ctx.log(f"generating {n_receipts:,} receipts into {data} (not timed) ...")
        manifest = generate(data, n_receipts, days=LOAD_DAYS, seed=LOAD_SEED, log=ctx.log)
        notes.append(f"generating the input took {manifest['seconds']:.0f}s (not part of any figure)")

    rss_limit = min(16 * 1024 * 1024, int(mem_available_kib() * 0.75))
    runs: list[dict] = []
    size_started = time.perf_counter()
    planned = 3
    for rep in range(planned):
        rep_dir = work / f"rep{rep}"
        _rmtree(rep_dir)
        cmd, result_path = load_child.command(data, manifest, rep_dir)
        # The one-call build of all the days needs ~2.4 GiB per million receipts: at 10M it passes the
        # watchdog's limit every time, so only the first repetition tries it.
        whole_range = n_receipts <= 1_000_000 or rep == 0
        if whole_range:
            cmd.append("--whole-range")
        ctx.log(f"{label} repetition {rep + 1}: load, sources, staging per day"
                + (", staging whole range" if whole_range else "") + f" (RSS limit {rss_limit / 1024 / 1024:.1f} GiB) ...")
        child = run_watched(cmd, rss_limit_kib=rss_limit, cwd=REPO)
        result = json.loads(result_path.read_text()) if result_path.exists() else {}
        result["child"] = dataclasses.asdict(child)
        runs.append(result)
        (work / f"rep{rep}.json").write_text(json.dumps(result, default=str))  # kept if this process is killed
        _rmtree(rep_dir)
        ctx.log(f"{label} repetition {rep + 1}: exit {child.returncode} in {child.wall_seconds:.0f}s"
                + (" (killed: RSS over the limit)" if child.killed_for_memory else ""))
        if child.killed_for_memory:
            notes.append(f"repetition {rep + 1} was killed by the watchdog when its RSS passed "
                         f"{rss_limit / 1024 / 1024:.1f} GiB, in phase "
                         f"{_phase_after(result)}; the phases before it are reported")
        elif child.returncode != 0 or not result.get("complete"):
            notes.append(f"repetition {rep + 1} failed with exit status {child.returncode}")
            break
        if rep == 0 and time.perf_counter() - size_started > SIZE_BUDGET_SECONDS:
            notes.append(f"ran once: the first repetition took {time.perf_counter() - size_started:.0f}s "
                         f"(more than {SIZE_BUDGET_SECONDS}s)")
            break

    if n_receipts > 1_000_000 and len(runs) > 1:
        notes.append("the one-call build of all the days ran in the first repetition only (it needs more memory "
                     "than the watchdog allows at this size)")

    def values(fn) -> list[float]:
        out = []
        for r in runs:
            try:
                out.append(fn(r))
            except (KeyError, ZeroDivisionError, TypeError, ValueError):
                pass
        return out

    mib = lambda kib: kib / KIB_PER_MIB  # noqa: E731
    metrics = [
        metric("load_spool: receipts/s", values(lambda r: r["load"]["records"] / r["load"]["seconds"]), "rows/s"),
        metric("load_source_files (sends + conversions): rows/s",
               values(lambda r: (r["sources"]["sends_rows"] + r["sources"]["conversions_rows"]) / r["sources"]["seconds"]),
               "rows/s"),
        metric("build_messages per day (normalize + stage): receipts/s",
               values(lambda r: r["staging"]["receipts"] / r["staging"]["seconds"]), "rows/s",
               "the sends rows, about as many, are normalized in the same calls"),
        metric("end to end (load + sources + staging per day): receipts/s",
               values(lambda r: r["load"]["records"] / (r["load"]["seconds"] + r["sources"]["seconds"] + r["staging"]["seconds"])),
               "rows/s"),
        metric("build_messages, all days in one call: receipts/s",
               values(lambda r: r["staging_whole_range"]["receipts"] / r["staging_whole_range"]["seconds"]), "rows/s"),
        metric("load_spool seconds", values(lambda r: r["load"]["seconds"]), "s"),
        metric("load_source_files seconds", values(lambda r: r["sources"]["seconds"]), "s"),
        metric("build_messages per day, seconds (all days)", values(lambda r: r["staging"]["seconds"]), "s"),
        metric("build_messages all days in one call, seconds", values(lambda r: r["staging_whole_range"]["seconds"]), "s"),
        metric("peak RSS: after imports (baseline)", values(lambda r: mib(r["baseline_rss_kib"])), "MiB"),
        metric("peak RSS: load_spool", values(lambda r: mib(r["load"]["peak_rss_kib"])), "MiB"),
        metric("peak RSS: load_source_files", values(lambda r: mib(r["sources"]["peak_rss_kib"])), "MiB"),
        metric("peak RSS: build_messages per day", values(lambda r: mib(r["staging"]["peak_rss_kib"])), "MiB"),
        metric("peak RSS: build_messages all days in one call",
               values(lambda r: mib(r["staging_whole_range"]["peak_rss_kib"])), "MiB"),
        metric("peak RSS of the process (highest phase)",
               values(lambda r: mib(max(r[p]["peak_rss_kib"] for p in ("load", "sources", "staging", "staging_whole_range") if p in r))),
               "MiB"),
        metric("DuckDB file size", values(lambda r: r["db_bytes"] / 2**20), "MiB"),
    ]
    for phase, what in (("load", "load_spool"), ("staging", "build_messages per day"),
                        ("staging_whole_range", "build_messages in one call")):
        names = sorted({k for r in runs for k in r.get(phase, {}).get("timers", {}).get("seconds", {})})
        for name in names:
            if name == "load_files":
                continue  # the whole of load_spool but its directory listing
            metrics.append(metric(f"{what}: of which in {name}{TIMED.get(name, '')}",
                                  values(lambda r, p=phase, n=name: r[p]["timers"]["seconds"][n]), "s"))
    metrics += [
        metric("load_spool: _insert_new per 500-file transaction, first tenth of the load (mean)",
               values(lambda r: _tenth(r["load"]["timers"]["series"]["_insert_new"], first=True) * 1000), "ms"),
        metric("load_spool: _insert_new per 500-file transaction, last tenth of the load (mean)",
               values(lambda r: _tenth(r["load"]["timers"]["series"]["_insert_new"], first=False) * 1000), "ms"),
    ]
    killed = [r for r in runs if r["child"]["killed_for_memory"]]
    for r in killed:
        metrics.append(metric("RSS when the watchdog killed the process", [mib(r["child"]["max_sampled_rss_kib"])], "MiB"))
    per_day = [d["seconds"] for r in runs for d in r.get("staging", {}).get("per_day", [])]
    return {
        "title": f"normalize_and_load_{label}: {n_receipts:,} receipts into DuckDB",
        "what": ("Throughput (rows/s) and peak memory of turning spooled PullSmsSendStatus pages into raw and "
                 "staging tables: `load_spool` into a fresh DuckDB file, `load_source_files` of the matching "
                 "sends log and conversions, then `build_messages` (E.164 and UTC normalization, joins, slice "
                 "rewrite), once per day as the daily partitions do, and then once over all the days as a "
                 "single-run backfill does."),
        "how": (f"{manifest['pages']:,} pages of 100 records ({manifest['spool_bytes'] / 2**20:,.0f} MiB) written "
                f"with `Spool.write` by `benchmarks/receipts.py` (streaming; not timed): {manifest['receipts']:,} "
                f"receipts, {manifest['messages']:,} messages over {LOAD_DAYS} days "
                f"({manifest['first_day']}..{manifest['last_day']}), {manifest['distinct_numbers']:,} distinct "
                f"numbers (about 85% +86 mobiles, 10% other regions, 5% dirty forms), 1% millisecond and 0.1% zero "
                f"receive times, {manifest['orphan_messages']:,} messages missing from the sends log "
                f"({manifest['sends_rows']:,} sends rows in {LOAD_DAYS} daily NDJSON files, "
                f"{manifest['sends_bytes'] / 2**20:,.0f} MiB; {manifest['conversions']:,} conversions). Each "
                "repetition hard-links the spool into a fresh folder and runs `benchmarks/load_child.py` in a "
                "fresh process; phases are timed with perf_counter. Peak RSS per phase is VmHWM, reset between "
                "phases through /proc/self/clear_refs, so each phase's figure includes the process baseline. "
                "The time inside some functions of the loader and staging modules (listed as 'of which in') is "
                "measured by wrapping them where their callers look them up (about 1 us a call). "
                f"A watchdog kills the process above {rss_limit / 1024 / 1024:.1f} GiB RSS."),
        "repetitions": len(runs),
        "metrics": metrics,
        "details": {"manifest": manifest, "runs": runs, "rss_limit_kib": rss_limit,
                    "per_day_build_seconds": per_day},
        "notes": notes,
    }


TIMED = {  # what the timed functions of the code under test do, for the report
    "_parse_file": " (read + orjson per spool file)",
    "records_frame": " (records into a polars frame)",
    "_key_receipts": " (record keys: receive seconds, concat)",
    "_insert_new": " (DuckDB anti join on record_key + insert)",
    "normalize_phones": " (E.164)",
    "unix_seconds_to_utc": " (UTC times)",
    "replace_slice": " (DuckDB delete + insert of the staged rows)",
}


def _tenth(series: list[float], *, first: bool) -> float:
    k = max(1, len(series) // 10)
    part = series[:k] if first else series[-k:]
    return sum(part) / len(part)


def _phase_after(result: dict) -> str:
    for phase in ("load", "sources", "staging", "staging_whole_range"):
        if phase not in result:
            return phase
    return "the end"


# -- 2. drain against the documented rate limit ------------------------------------------------


def _max_in_window(ns: list[int], window_ns: int = 10**9) -> int:
    best = 0
    lo = 0
    for hi, t in enumerate(ns):
        while t - ns[lo] >= window_ns:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def bench_drain_vs_rate_limit(ctx: Context) -> dict:
    from benchmarks.simproc import simulator_process
    from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
    from pipelines.ingest.drain import drain_queue
    from pipelines.tencent import actions as A
    from pipelines.tencent.client import SmsApiClient
    from pipelines.spool import Spool

    import inspect

    limit = A.RATE_LIMITS[A.PULL_SEND_STATUS]
    fraction = inspect.signature(SmsApiClient.__init__).parameters["rate_fraction"].default
    days, per_day, workers = 7, 30_000, 4
    runs = []
    for rep in range(3):
        with simulator_process(days=days, messages_per_day=per_day, rate_scale=1, seed=7) as sim:
            spool_dir = ctx.work / f"drain-{rep}"
            _rmtree(spool_dir)
            client = SmsApiClient(endpoint=sim.url, secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY,
                                  sdk_app_id=DEMO_SDK_APP_ID)
            server_cpu = sim.cpu_seconds()
            client_cpu = time.process_time()
            report = drain_queue(client, Spool(spool_dir), A.PULL_SEND_STATUS, workers=workers, time_budget_seconds=900)
            client_cpu = time.process_time() - client_cpu
            server_cpu = sim.cpu_seconds() - server_cpu
            stats = sim.stats()
            client.close()
        arrivals = sorted(int(p.name.split(".")[0]) for p in (spool_dir / "ready").iterdir())
        _rmtree(spool_dir)
        run = {**dataclasses.asdict(report), "pulls_per_second": report.pulls_per_second,
               "server_requests": stats["requests"].get(A.PULL_SEND_STATUS, 0),
               "server_rate_limited": stats["errors"].get("RequestLimitExceeded", 0),
               "max_responses_in_1s": _max_in_window(arrivals), "client_cpu_seconds": client_cpu,
               "server_cpu_seconds": server_cpu, "simulator_startup_seconds": sim.startup_seconds}
        runs.append(run)
        ctx.log(f"drain repetition {rep + 1}: {report.pulls} pulls, {report.records:,} records in {report.seconds:.1f}s "
                f"= {report.pulls_per_second:.1f} pulls/s, throttled {report.throttled}, stopped by {report.stopped_by}")
    return {
        "title": "drain_vs_rate_limit: drain_queue at the documented 100 requests/s",
        "what": ("How close `drain_queue` (4 workers sharing one `SmsApiClient` with the default per-action limits) "
                 "gets to the documented PullSmsSendStatus limit of 100 requests/s without being throttled."),
        "how": (f"Simulator in a child process with rate_scale=1 (it answers RequestLimitExceeded beyond 100 "
                f"requests in any rolling second), {days} days x {per_day:,} messages/day, seed 7; the drain "
                "spools every page (fsync) until a short page. pulls/s = pulls / drain seconds, including the last "
                f"short page; the client limiter aims at {fraction:.0%} of the limit (SmsApiClient's default "
                f"rate_fraction {fraction}) after an initial burst of up to {limit:.0f} requests. Throttled = "
                "RequestLimitExceeded answers seen by the drain; the simulator's own count is reported beside it. "
                "Peak per second = most spooled responses in any 1-second window of their arrival times."),
        "repetitions": len(runs),
        "metrics": [
            metric("pulls/s", [r["pulls_per_second"] for r in runs], "pulls/s"),
            metric("fraction of the 100/s limit", [r["pulls_per_second"] / limit for r in runs], "ratio"),
            metric("records/s", [r["records"] / r["seconds"] for r in runs], "records/s"),
            metric("throttled (RequestLimitExceeded, client side)", [r["throttled"] for r in runs], "requests"),
            metric("RequestLimitExceeded counted by the simulator", [r["server_rate_limited"] for r in runs], "requests"),
            metric("most responses in any 1 s window", [r["max_responses_in_1s"] for r in runs], "responses"),
            metric("pulls", [r["pulls"] for r in runs], "pulls"),
            metric("drain seconds", [r["seconds"] for r in runs], "s"),
            metric("client CPU per pull (4 threads, incl. spool fsync)",
                   [r["client_cpu_seconds"] / r["pulls"] * 1e6 for r in runs], "us"),
        ],
        "details": {"runs": runs},
        "notes": [],
    }


# -- 3. client pulls per second, rate limits off --------------------------------------------------


def _client_pulls(url: str, threads: int) -> dict:
    """Threads sharing one SmsApiClient pull until the queue gives a short page; like the
    simulator's bench, the rate is full pages from the start to the last full page."""
    from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
    from pipelines.tencent import actions as A
    from pipelines.tencent.client import SmsApiClient

    client = SmsApiClient(endpoint=url, secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY,
                          sdk_app_id=DEMO_SDK_APP_ID, rate_limits={})
    pages: list[float] = []
    failures: list[str] = []
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        while len(failures) < 20:
            raw = client.pull_queue_raw(A.PULL_SEND_STATUS)
            if raw.indeterminate:
                failures.append(raw.failure or "")
                continue
            if raw.body.count(b'"SerialNo"') < 100:
                return
            pages.append(time.perf_counter())

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    cpu = time.process_time()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    cpu = time.process_time() - cpu
    client.close()
    return {"pages": len(pages), "seconds": max(pages) - start, "rate": len(pages) / (max(pages) - start),
            "client_cpu_seconds": cpu, "failures": failures}


def bench_client_pulls_per_second(ctx: Context) -> dict:
    from benchmarks.simproc import simulator_process
    from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
    from pipelines.ingest.drain import drain_queue
    from pipelines.simulator import bench as simbench
    from pipelines.tencent import actions as A
    from pipelines.tencent.client import SmsApiClient
    from pipelines.spool import Spool

    days, per_day = 7, 20_000  # the simulator bench's default queue, so the ratios compare like with like
    rows: dict[str, list[dict]] = {}
    for rep in range(3):  # configurations interleaved, so a noisy minute spreads over all of them
        for threads in (1, 4, 8):
            with simulator_process(days=days, messages_per_day=per_day, rate_scale=0, seed=7) as sim:
                server_cpu = sim.cpu_seconds()
                result = _client_pulls(sim.url, threads)
                result["server_cpu_seconds"] = sim.cpu_seconds() - server_cpu
            rows.setdefault(f"SmsApiClient.pull_queue_raw, {threads} thread{'s' if threads > 1 else ''}", []).append(result)
            ctx.log(f"client {threads} threads, repetition {rep + 1}: {result['rate']:,.0f} pulls/s")
        with simulator_process(days=days, messages_per_day=per_day, rate_scale=0, seed=7) as sim:
            spool_dir = ctx.work / f"pulls-drain-{rep}"
            _rmtree(spool_dir)
            client = SmsApiClient(endpoint=sim.url, secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY,
                                  sdk_app_id=DEMO_SDK_APP_ID, rate_limits={})
            server_cpu = sim.cpu_seconds()
            cpu = time.process_time()
            report = drain_queue(client, Spool(spool_dir), A.PULL_SEND_STATUS, workers=4, time_budget_seconds=600)
            cpu = time.process_time() - cpu
            server_cpu = sim.cpu_seconds() - server_cpu
            client.close()
            _rmtree(spool_dir)
        rows.setdefault("drain_queue (client + spool fsync), 4 workers", []).append(
            {"pages": report.pulls, "seconds": report.seconds, "rate": report.pulls_per_second,
             "client_cpu_seconds": cpu, "server_cpu_seconds": server_cpu, "throttled": report.throttled})
        ctx.log(f"drain_queue 4 workers, repetition {rep + 1}: {report.pulls_per_second:,.0f} pulls/s")
        for kind in ("httpx", "raw"):
            rate, pages, server_us = simbench.run_once(kind, 1, 8, days, per_day)
            label = ("simulator bench, bare httpx clients (one httpx.Client per thread), 8 threads" if kind == "httpx"
                     else "simulator bench, raw keep-alive sockets (server capacity), 8 threads")
            rows.setdefault(label, []).append({"pages": pages, "rate": rate, "server_cpu_us_per_pull": server_us})
            ctx.log(f"{label}, repetition {rep + 1}: {rate:,.0f} pulls/s")
    capacity_label = "simulator bench, raw keep-alive sockets (server capacity), 8 threads"
    capacity = statistics.median(r["rate"] for r in rows[capacity_label])
    metrics = []
    for label, results in rows.items():
        metrics.append(metric(f"{label}: pulls/s", [r["rate"] for r in results], "pulls/s"))
    for label, results in rows.items():
        if label != capacity_label:
            metrics.append(metric(f"{label}: share of the server's capacity (median raw)",
                                  [r["rate"] / capacity for r in results], "ratio"))
    for label, results in rows.items():
        if "client_cpu_seconds" in results[0]:
            metrics.append(metric(f"{label}: client CPU per pull", [r["client_cpu_seconds"] / r["pages"] * 1e6 for r in results], "us"))
    for label, results in rows.items():
        if "server_cpu_seconds" in results[0]:
            metrics.append(metric(f"{label}: server CPU per pull", [r["server_cpu_seconds"] / r["pages"] * 1e6 for r in results], "us"))
        elif "server_cpu_us_per_pull" in results[0]:
            metrics.append(metric(f"{label}: server CPU per pull", [r["server_cpu_us_per_pull"] for r in results], "us"))
    return {
        "title": "client_pulls_per_second: our client against the simulator, rate limits off",
        "what": ("PullSmsSendStatus pages per second that `SmsApiClient.pull_queue_raw` gets from the simulator "
                 "with rate limits off, sequentially and with 4 and 8 threads sharing one client; the same drained "
                 "through `drain_queue` (which also spools every page with fsync); and, for the ratio, the "
                 "simulator's own bench (`pipelines/simulator/bench.py` `run_once`) with bare httpx clients and "
                 "with raw keep-alive sockets, which shows what the server itself sustains."),
        "how": (f"Each measurement starts a fresh simulator in a child process ({days} days x {per_day:,} "
                "messages/day, seed 7, rate_scale=0) and drains its PullSmsSendStatus queue (Limit=100). "
                "pulls/s = full pages from the start to the last full page (the simulator bench's definition); "
                "the drain_queue row counts every pull over the drain's seconds. Configurations are interleaved "
                "within each of the 3 repetitions. CPU per pull: the client process's CPU time (all threads) and the "
                "simulator process's (from /proc) over the measurement, divided by pages. Client and server share "
                "the 2 cores."),
        "repetitions": 3,
        "metrics": metrics,
        "details": {"rows": rows, "server_capacity_median": capacity},
        "notes": [],
    }


# -- 4. mart rebuilds ----------------------------------------------------------------------------


def bench_metric_rebuild(ctx: Context) -> dict:
    from zoneinfo import ZoneInfo

    from benchmarks.simproc import simulator_process
    from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY
    from pipelines.ingest.drain import drain_queue
    from assets.resources import MetricsConfig
    from pipelines.ingest.statistics import fetch_statistics, store_statistics
    from pipelines.tencent import actions as A
    from pipelines.tencent.client import SmsApiClient
    from pipelines.warehouse.db import open_warehouse
    from pipelines.warehouse.loader import load_spool
    from pipelines.warehouse.marts import MARTS, rebuild
    from pipelines.warehouse.sending_app import load_source_files
    from pipelines.spool import Spool
    from pipelines.days import DayRange
    from pipelines.warehouse.staging import build_messages, build_replies

    days_n, per_day = 30, 20_000
    end = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    tz = ZoneInfo("UTC")
    all_days = DayRange((end - dt.timedelta(days=days_n)).date(), (end - dt.timedelta(days=1)).date(), tz)
    one_day = DayRange(all_days.last, all_days.last, tz)
    root = ctx.work / "marts"
    _rmtree(root)
    root.mkdir(parents=True)
    setup: dict[str, float] = {}
    t = time.perf_counter()
    with simulator_process(days=days_n, messages_per_day=per_day, rate_scale=0, seed=7, now=end.timestamp(),
                           clock_runs=False, out_dir=root / "simulator") as sim:
        setup["simulator_startup"] = sim.startup_seconds
        client = SmsApiClient(endpoint=sim.url, secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY,
                              sdk_app_id=DEMO_SDK_APP_ID, rate_limits={})
        spool = Spool(root / "spool")
        t = time.perf_counter()
        drained = {action: dataclasses.asdict(drain_queue(client, spool, action, workers=4, time_budget_seconds=900))
                   for action in A.QUEUE_ACTIONS}
        setup["drain"] = time.perf_counter() - t
        with open_warehouse(root / "warehouse.duckdb") as con:
            t = time.perf_counter()
            loaded = dataclasses.asdict(load_spool(con, spool))
            setup["load_spool"] = time.perf_counter() - t
            t = time.perf_counter()
            sends = load_source_files(con, "sends", str(root / "simulator" / "sends.ndjson"))
            conversions = load_source_files(con, "conversions", str(root / "simulator" / "conversions.ndjson"))
            setup["load_source_files"] = time.perf_counter() - t
            t = time.perf_counter()
            stats = store_statistics(con, fetch_statistics(client, all_days).frame)
            setup["statistics"] = time.perf_counter() - t
        client.close()
    ctx.log(f"warehouse filled: {loaded['new_records']:,} records, {sends.rows:,} sends, "
            f"{conversions.rows:,} conversions, {stats.hours} statistics hours")
    params = MetricsConfig()
    mart_params = {
        "marts.message_status": {"attribution_days": params.conversion_window_days},
        "marts.replies": {"attribution_hours": params.reply_window_hours,
                          "opt_out_words": [w.lower() for w in params.opt_out_words]},
        "marts.provider_statistics_hourly": {"timezone": params.timezone},
    }
    with open_warehouse(root / "warehouse.duckdb") as con:
        t = time.perf_counter()
        staged_messages = dataclasses.asdict(build_messages(con, all_days))
        staged_replies = dataclasses.asdict(build_replies(con, all_days))
        setup["staging_30_days"] = time.perf_counter() - t
        sizes = {table: con.execute(f"select count(*) from {table}").fetchone()[0]
                 for table in ("raw.send_status", "raw.reply_status", "raw.sends", "raw.conversions",
                               "raw.statistics_hourly", "staging.sends", "staging.receipts", "staging.replies",
                               "staging.conversions")}
        ctx.log(f"staging built in {setup['staging_30_days']:.1f}s: {sizes}")
        timings: dict[str, dict[str, list[float]]] = {"1d": {}, "30d": {}}
        rows_written: dict[str, dict[str, int]] = {"1d": {}, "30d": {}}
        for rep in range(3):
            for scope, days in (("1d", one_day), ("30d", all_days)):
                total = time.perf_counter()
                for table in MARTS:
                    t = time.perf_counter()
                    rows_written[scope][table] = rebuild(con, table, days, **mart_params.get(table, {}))
                    timings[scope].setdefault(table, []).append(time.perf_counter() - t)
                timings[scope].setdefault("all marts", []).append(time.perf_counter() - total)
                ctx.log(f"rebuild {scope} repetition {rep + 1}: {timings[scope]['all marts'][-1]:.2f}s")
        db_bytes = os.path.getsize(root / "warehouse.duckdb")
    metrics = []
    for scope in ("1d", "30d"):
        metrics.append(metric(f"{scope}: all 7 marts", timings[scope]["all marts"], "s"))
    msgs_30 = rows_written["30d"]["marts.message_status"]
    metrics.append(metric("30d: message_status rows per second of the full rebuild",
                          [msgs_30 / s for s in timings["30d"]["all marts"]], "rows/s"))
    for scope in ("1d", "30d"):
        for table in MARTS:
            metrics.append(metric(f"{scope}: {table}", timings[scope][table], "s"))
    return {
        "title": "metric_rebuild_1d / metric_rebuild_30d: all marts for 1 day and for 30 days",
        "what": ("Time to rebuild every mart (`rebuild(con, table, days, **params)` for the 7 tables of `MARTS`, in "
                 "dependency order, each one delete + insert in its own transaction) for the last day and for all "
                 "30 days of a warehouse holding 30 days x 20,000 messages/day."),
        "how": (f"The warehouse is built once (not timed): a simulator ({days_n} days x {per_day:,} messages/day, "
                f"seed 7, clock frozen at {end.date()}, rate limits off) in a child process; both queues drained "
                "with 4 workers; `load_spool`; its sends and conversions files through `load_source_files`; "
                "`fetch_statistics` + `store_statistics` for the 30 days; `build_messages` and `build_replies` over the 30 days. Then 3 "
                "repetitions, each rebuilding all marts for 1 day and then for 30 days, on one DuckDB connection "
                "(DuckDB caches warm after the first). Parameters are MetricsConfig's defaults. Dagster's own "
                "per-asset overhead is not included."),
        "repetitions": 3,
        "metrics": metrics,
        "details": {"setup_seconds": setup, "drained": drained, "loaded": loaded, "sends_rows": sends.rows,
                    "conversion_rows": conversions.rows, "statistics_hours": stats.hours, "sizes": sizes,
                    "staged_messages": staged_messages, "staged_replies": staged_replies,
                    "rows_written": rows_written, "timings": timings, "db_bytes": db_bytes},
        "notes": [],
    }


# -- 5. the demo ----------------------------------------------------------------------------------


_STEP_STATS = """
import json, dagster as dg
inst = dg.DagsterInstance.get()
out = []
for run in inst.get_runs(limit=100):
    steps = {s.step_key: s.end_time - s.start_time for s in inst.get_run_step_stats(run.run_id)
             if s.end_time and s.start_time}
    stats = inst.get_run_stats(run.run_id)
    assets = {}
    for event in inst.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        m = event.dagster_event.event_specific_data.materialization
        key = "/".join(m.asset_key.path)
        if key not in assets:  # one per partition of a single-run backfill: the same numbers
            assets[key] = {k: v.value for k, v in m.metadata.items() if isinstance(getattr(v, "value", None), (int, float))}
    out.append({"run_id": run.run_id, "job": run.job_name, "status": str(run.status),
                "seconds": (stats.end_time or 0) - (stats.start_time or 0), "steps": steps, "assets": assets})
print(json.dumps(out))
"""


def bench_demo_wall_time(ctx: Context) -> dict:
    runs_n = 2 if ctx.quick else 4
    root = ctx.work / "demo"
    _rmtree(root)
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    for name in list(env):
        if name.startswith(("SMSLEDGER_", "TENCENTCLOUD_")):
            env.pop(name)
    cli = Path(sys.executable).parent / "smsledger"
    runs = []
    seen_runs: set[str] = set()
    for i in range(runs_n):
        log_path = root / f"run{i + 1}.log"
        ctx.log(f"smsledger demo, run {i + 1} of {runs_n} ({'cold' if i == 0 else 're-run'}) ...")
        lines: list[tuple[float, str]] = []
        started = time.perf_counter()
        proc = subprocess.Popen([str(cli), "demo"], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        for raw in proc.stdout:
            lines.append((time.perf_counter() - started, raw.decode("utf-8", "replace").rstrip()))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        log_path.write_text("\n".join(f"{t:8.2f} {line}" for t, line in lines) + "\n")
        phases = {}
        for t, line in lines:
            for key, marker in (("simulator_started", "simulator on "), ("drain_done", "drained queues"),
                                ("materialize_done", "materialized "), ("finished", "demo finished")):
                if line.startswith(marker) and key not in phases:
                    phases[key] = t
        stats_out = subprocess.run([sys.executable, "-c", _STEP_STATS], cwd=root, env=env, capture_output=True, text=True)
        dagster_runs = []
        if stats_out.returncode == 0:
            for r in json.loads(stats_out.stdout):
                if r["run_id"] not in seen_runs:
                    seen_runs.add(r["run_id"])
                    dagster_runs.append(r)
        runs.append({"run": i + 1, "cold": i == 0, "exit": code, "wall_seconds": wall, "phases": phases,
                     "ru_maxrss_kib": usage.ru_maxrss, "cpu_seconds": usage.ru_utime + usage.ru_stime,
                     "dagster_runs": dagster_runs, "last_lines": [line for _, line in lines[-3:]]})
        ctx.log(f"run {i + 1}: exit {code} in {wall:.1f}s")
        if code != 0:
            runs[-1]["output"] = [line for _, line in lines[-30:]]
            break
    cold = [r for r in runs if r["cold"]]
    again = [r for r in runs if not r["cold"]]

    def phase(r: dict, a: str | None, b: str) -> float | None:
        p = r["phases"]
        if b not in p or (a and a not in p):
            return None
        return p[b] - (p[a] if a else 0.0)

    def step(r: dict, key: str) -> float | None:
        for d in r["dagster_runs"]:
            if key in d["steps"]:
                return d["steps"][key]
        return None

    metrics = [metric("wall time, cold (first run in a fresh folder)", [r["wall_seconds"] for r in cold], "s"),
               metric("wall time, idempotent re-run", [r["wall_seconds"] for r in again], "s")]
    for label, group in (("cold", cold), ("re-run", again)):
        metrics += [
            metric(f"{label}: start to simulator up (imports + traffic generation)", [phase(r, None, "simulator_started") for r in group], "s"),
            metric(f"{label}: drain job (drain_queues)", [phase(r, "simulator_started", "drain_done") for r in group], "s"),
            metric(f"{label}: daily_partitions job (7 days)", [phase(r, "drain_done", "materialize_done") for r in group], "s"),
            metric(f"{label}: summary and exit", [phase(r, "materialize_done", "finished") for r in group], "s"),
        ]
        step_keys = sorted({k for r in group for d in r["dagster_runs"] for k in d["steps"]})
        for key in step_keys:
            values = [step(r, key) for r in group]
            if any(v is not None and v >= 1.0 for v in values):
                metrics.append(metric(f"{label}: Dagster step {key}", values, "s"))
        metrics.append(metric(f"{label}: gap fill by-number requests (pages)", [_asset(r, "raw/gap_fill", "pages") for r in group], "requests"))
        metrics.append(metric(f"{label}: gap fill messages lacking a receipt", [_asset(r, "raw/gap_fill", "missing_messages") for r in group], "messages"))
        metrics.append(metric(f"{label}: gap fill new records", [_asset(r, "raw/gap_fill", "new_records") for r in group], "records"))
        metrics.append(metric(f"{label}: gap fill requests per second of its step",
                              [_ratio(_asset(r, "raw/gap_fill", "pages"), step(r, "raw__gap_fill")) for r in group], "requests/s"))
        metrics.append(metric(f"{label}: peak RSS of the demo process", [r["ru_maxrss_kib"] / KIB_PER_MIB for r in group], "MiB"))
    return {
        "title": "demo_wall_time: `smsledger demo`",
        "what": ("Wall time of `smsledger demo` (7 days x 20,000 messages/day on the embedded simulator: drain, "
                 "load, materialize the 7 daily partitions through Dagster, summary), excluding the install (the "
                 "venv exists)."),
        "how": (f"{runs_n} runs in one scratch folder (cwd, with DAGSTER_HOME there holding a copy of dagster.yaml): "
                "the first is cold (empty data/, fresh Dagster instance; the OS file cache and Python bytecode "
                "caches are warm), the others are idempotent re-runs of the same day. Wall time from process start "
                "to exit; phases from the arrival time of the demo's progress lines; step times from the Dagster "
                "instance's step stats."),
        "repetitions": f"{len(cold)} cold + {len(again)} re-runs",
        "metrics": metrics,
        "details": {"runs": runs},
        "notes": ["the cold figure is a single run by design (only the first run in a folder is cold)"],
    }


def _asset(run: dict, key: str, field: str) -> float | None:
    for d in run["dagster_runs"]:
        if key in d.get("assets", {}) and field in d["assets"][key]:
            return d["assets"][key][field]
    return None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# -- 6. normalization alone -----------------------------------------------------------------------


def bench_normalize(ctx: Context) -> dict:
    from benchmarks import normalize_bench

    n = 1_000_000
    r = normalize_bench.run(n)
    return {
        "title": "normalize_bench: phone (E.164) and timestamp normalization of 1,000,000 rows",
        "what": "`normalize_phones` and `unix_seconds_to_utc` on a polars frame, as `benchmarks/normalize_bench.py` measures them.",
        "how": (f"`normalize_bench.run({n:_})`: 1M rows drawn from {r['distinct_numbers']:,} distinct numbers "
                "(85% +86 mobiles, 10% other regions, 5% dirty forms), receive times with 1% milliseconds and 0.1% "
                "zero; 3 timed runs each (the first with phonenumbers' caches cold)."),
        "repetitions": 3,
        "metrics": [
            metric("normalize_phones: rows/s", [n / s for s in r["phones_seconds"]], "rows/s"),
            metric("unix_seconds_to_utc: rows/s", [n / s for s in r["timestamps_seconds"]], "rows/s"),
            metric("normalize_phones seconds", r["phones_seconds"], "s"),
            metric("unix_seconds_to_utc seconds", r["timestamps_seconds"], "s"),
            metric("share of valid numbers", [r["phones_valid_share"]], "ratio"),
        ],
        "details": r,
        "notes": [],
    }


# -- end to end beside the reference paths (issue 10) ----------------------------------------------


def bench_end_to_end_vs_references(ctx: Context, n_receipts: int) -> dict:
    from benchmarks.compare import PATHS, compare, table

    repetitions = 1 if ctx.quick else 3
    report = compare(n_receipts, repetitions, data=ctx.work / f"receipts-{n_receipts}" / "data",
                     work=ctx.work / f"compare-{n_receipts}", log=ctx.log)
    metrics = []
    for path in PATHS:
        runs = [r for r in report["runs"][path] if r["complete"]]
        metrics += [
            metric(f"{path}: receipts/s (wall)", [n_receipts / r["wall_seconds"] for r in runs], "rows/s"),
            metric(f"{path}: CPU seconds", [r["cpu_seconds"] for r in runs], "s"),
            metric(f"{path}: peak RSS", [r["peak_rss_kib"] / KIB_PER_MIB for r in runs], "MiB"),
        ]
    return {
        "title": f"end_to_end_vs_references_{n_receipts // 1_000_000}m",
        "what": "smsledger end to end (load + sends log + per-day staging) beside dlt's parquet and pyarrow loads "
                "and a bare polars -> DuckDB path with our normalization and dedupe, on the same receipts",
        "how": "benchmarks/compare.py: each path in a fresh process, one after the other; CPU seconds and peak RSS "
               "from wait4 (smsledger: the largest phase VmHWM)",
        "repetitions": repetitions,
        "metrics": metrics,
        "notes": [table(report)],
    }


BENCHMARKS: dict[str, Callable[[Context], dict]] = {
    "end_to_end_vs_references_1m": lambda ctx: bench_end_to_end_vs_references(ctx, 1_000_000),
    "end_to_end_vs_references_10m": lambda ctx: bench_end_to_end_vs_references(ctx, 10_000_000),
    "normalize_and_load_1m": lambda ctx: bench_normalize_and_load(ctx, 1_000_000),
    "normalize_and_load_10m": lambda ctx: bench_normalize_and_load(ctx, 10_000_000),
    "drain_vs_rate_limit": bench_drain_vs_rate_limit,
    "client_pulls_per_second": bench_client_pulls_per_second,
    "metric_rebuild": bench_metric_rebuild,
    "demo_wall_time": bench_demo_wall_time,
    "normalize_bench": bench_normalize,
}
ALIASES = {"metric_rebuild_1d": "metric_rebuild", "metric_rebuild_30d": "metric_rebuild",
           "normalize_bench_1m": "normalize_bench"}
