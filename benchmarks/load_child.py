"""One repetition of the normalize-and-load benchmark, in a fresh process so that its memory
high-water mark is its own:

    python -m benchmarks.load_child --spool DIR --sends GLOB --conversions GLOB --db FILE \
        --first DAY --last DAY --result FILE

Phases, each timed on its own (wall seconds, time.perf_counter):
  load     `load_spool` of every spooled PullSmsSendStatus page into a fresh DuckDB file;
  sources  `load_source_files` of the sends log and the conversion events;
  staging  `build_messages` for each day in turn (normalization of sends and receipts, joins,
           writes), as the daily partitions are built;
  staging_rebuild (with --rebuild)  `build_messages` for each day again, as the lookback window of
           the next daily runs rebuilds them;
  staging_whole_range (with --whole-range)  `build_messages` once over all the days, as a
           single-run backfill of the range builds them (same input, rewrites the same slices).

Peak RSS per phase is VmHWM of /proc/self/status, reset between phases by writing 5 to
/proc/self/clear_refs, so each figure is that phase's own high-water mark (the process's baseline
after imports included). The parent also reads ru_maxrss from wait4(), which after the resets
covers the last phase only.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import resource
import time
from pathlib import Path
from zoneinfo import ZoneInfo


def vm_hwm_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def vm_rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Timers:
    """Wall seconds spent inside some module-level functions of the code under test, by wrapping
    them where their callers look them up (the module globals); the wrappers cost about a
    microsecond a call."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.series: dict[str, list[float]] = {}

    def wrap(self, module, name: str, *, keep_series: bool = False) -> None:
        """Time `module.name` under its own name; a function the module no longer has is skipped."""
        original = getattr(module, name, None)
        if not callable(original):
            return
        key = name

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - started
                self.seconds[key] = self.seconds.get(key, 0.0) + elapsed
                self.calls[key] = self.calls.get(key, 0) + 1
                if keep_series:
                    self.series.setdefault(key, []).append(elapsed)

        setattr(module, name, timed)

    def take(self) -> dict:
        out = {"seconds": self.seconds, "calls": self.calls, "series": self.series}
        self.seconds, self.calls, self.series = {}, {}, {}
        return out


def cpu_seconds() -> float:
    """CPU seconds of this process (every thread: DuckDB's too) and of its finished children (the
    sends-log parser)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def reset_hwm() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def command(data: Path, manifest: dict, rep_dir: Path) -> tuple[list[str], Path]:
    """A repetition on the generated input in `data` (benchmarks/receipts.py): its spool hard-linked
    into rep_dir (load_spool removes what it loaded), and the command and result file of this
    script for it."""
    import sys

    ready = rep_dir / "spool" / "ready"
    ready.mkdir(parents=True)
    (rep_dir / "spool" / "tmp").mkdir()
    for path in (data / "spool" / "ready").iterdir():
        os.link(path, ready / path.name)
    result_path = rep_dir / "result.json"
    cmd = [sys.executable, "-m", "benchmarks.load_child", "--spool", str(rep_dir / "spool"),
           "--sends", str(data / "sends" / "*.ndjson"), "--conversions", str(data / "conversions.ndjson"),
           "--db", str(rep_dir / "warehouse.duckdb"), "--first", manifest["first_day"],
           "--last", manifest["last_day"], "--result", str(result_path)]
    return cmd, result_path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spool", type=Path, required=True)
    parser.add_argument("--sends", required=True)
    parser.add_argument("--conversions", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--first", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--last", type=dt.date.fromisoformat, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--whole-range", action="store_true", help="then build all the days again in one call")
    parser.add_argument("--rebuild", action="store_true", help="then build each day again, one per call")
    ns = parser.parse_args()

    from pipelines.warehouse.db import open_warehouse
    from pipelines.warehouse.loader import load_spool
    from pipelines.warehouse.sending_app import load_source_files
    from pipelines.spool import Spool
    from pipelines.days import DayRange
    from pipelines.warehouse.staging import build_messages

    from pipelines.warehouse import loader, staging as staging_module

    timers = Timers()
    for name in ("load_files", "_parse_file", "records_frame", "_key_receipts", "_insert_new"):
        timers.wrap(loader, name, keep_series=name in ("load_files", "_insert_new"))
    for name in ("normalize_phones", "unix_seconds_to_utc", "_run"):
        timers.wrap(staging_module, name)

    out: dict = {"baseline_rss_kib": vm_rss_kib()}
    spool = Spool(ns.spool)
    days = DayRange(ns.first, ns.last, ZoneInfo("UTC"))
    with open_warehouse(ns.db) as con:
        out["duckdb_threads"] = con.execute("select current_setting('threads')").fetchone()[0]
        out["duckdb_memory_limit"] = con.execute("select current_setting('memory_limit')").fetchone()[0]
        reset_hwm()
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        load = load_spool(con, spool)
        t1 = time.perf_counter()
        out["load"] = {"seconds": t1 - t0, "cpu_seconds": cpu_seconds() - c0, "peak_rss_kib": vm_hwm_kib(), "timers": timers.take(), **dataclasses.asdict(load)}
        save(ns.result, out)
        reset_hwm()
        c1 = cpu_seconds()
        t1 = time.perf_counter()
        sends = load_source_files(con, "sends", ns.sends)
        conversions = load_source_files(con, "conversions", ns.conversions)
        t2 = time.perf_counter()
        out["sources"] = {"seconds": t2 - t1, "cpu_seconds": cpu_seconds() - c1, "peak_rss_kib": vm_hwm_kib(), "sends_rows": sends.rows,
                          "sends_files": sends.loaded_files, "conversions_rows": conversions.rows,
                          "quarantined": sends.quarantined + conversions.quarantined,
                          "problems": sends.problems + conversions.problems, "timers": timers.take()}
        save(ns.result, out)
        # The daily partitions one at a time, as the daily schedule builds them.
        reset_hwm()
        per_day = []
        c2 = cpu_seconds()
        t2 = time.perf_counter()
        for day in days.days():
            started = time.perf_counter()
            report = build_messages(con, DayRange(day, day, days.tz))
            per_day.append({"day": day.isoformat(), "seconds": time.perf_counter() - started, **dataclasses.asdict(report)})
        t3 = time.perf_counter()
        out["staging"] = {"seconds": t3 - t2, "cpu_seconds": cpu_seconds() - c2, "peak_rss_kib": vm_hwm_kib(), "per_day": per_day, "timers": timers.take(),
                          **{k: sum(d[k] for d in per_day) for k in ("sends", "messages", "receipts", "orphan_messages",
                                                                   "conversions", "flagged_times", "invalid_numbers")}}
        out["tables"] = _counts(con)
        save(ns.result, out)
        if ns.rebuild:
            # Every day built again, one per call, as the next daily runs rebuild their lookback window
            # (the same slices replaced; every number has been seen before).
            reset_hwm()
            c3 = cpu_seconds()
            t3 = time.perf_counter()
            for day in days.days():
                build_messages(con, DayRange(day, day, days.tz))
            out["staging_rebuild"] = {"seconds": time.perf_counter() - t3, "cpu_seconds": cpu_seconds() - c3,
                                      "peak_rss_kib": vm_hwm_kib(), "timers": timers.take()}
            save(ns.result, out)
        if ns.whole_range:
            # Every day in one call, as a single-run backfill of the range builds them.
            reset_hwm()
            c3 = cpu_seconds()
            t3 = time.perf_counter()
            report = build_messages(con, days)
            t4 = time.perf_counter()
            out["staging_whole_range"] = {"seconds": t4 - t3, "cpu_seconds": cpu_seconds() - c3, "peak_rss_kib": vm_hwm_kib(), "timers": timers.take(),
                                          **dataclasses.asdict(report)}
            save(ns.result, out)
        out["tables"] = _counts(con)
    out["db_bytes"] = os.path.getsize(ns.db) + (os.path.getsize(f"{ns.db}.wal") if os.path.exists(f"{ns.db}.wal") else 0)
    out["complete"] = True
    save(ns.result, out)


def _counts(con) -> dict[str, int]:
    return {table: con.execute(f"select count(*) from {table}").fetchone()[0]
            for table in ("raw.send_status", "raw.sends", "raw.conversions", "raw.quarantine",
                          "staging.sends", "staging.receipts", "staging.conversions")}


def save(path: Path, out: dict) -> None:
    """Results so far (a phase that runs out of memory leaves the earlier ones)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out, default=str))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
