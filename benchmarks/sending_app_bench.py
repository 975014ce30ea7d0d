"""Throughput and memory of loading the sending application's sends log (`load_source_files`).

    python -m benchmarks.sending_app_bench [--rows 1000000] [--format ndjson|csv|parquet]
        [--repeat 3] [--append-rows 10000] [--dir DIR] [--input FILE]

Writes a sends log of --rows records in the shape the simulator writes (a SerialNo per
successful send, 2% failed submissions without one), then, in a fresh process per repetition
(so that its memory high-water mark is its own), loads it into a new DuckDB file. With
--append-rows, the same process then appends that many records to the file and loads again: an
append should cost in proportion to what was appended, not to the file. --input reuses a log
written before (of --rows records), so that two versions of the code can be run on the same one.

Reported per repetition: wall seconds, rows/s, CPU seconds of the loading process and of the
processes it started (user + system, from getrusage), and the peak RSS of each (ru_maxrss:
the loading process, and the largest of its children).
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIELDS = ["SerialNo", "PhoneNumber", "Fee", "SessionContext", "Code", "Message", "IsoCode", "SendTime",
          "SmsSdkAppId", "TemplateId", "SignName"]
WRITE_BATCH = 100_000


def records(first: int, count: int, seed: int = 7) -> list[dict]:
    """`count` sends log records numbered from `first`, reproducible from the seed."""
    rng = random.Random(seed * 1_000_003 + first)
    out = []
    for n in range(first, first + count):
        failed = rng.random() < 0.02
        out.append({
            "SerialNo": "" if failed else f"2028:{6376154212416311681 + n}",
            "PhoneNumber": f"+86{rng.choice((13, 15, 18))}{rng.randrange(10**9):09d}",
            "Fee": 0 if failed else 1,
            "SessionContext": f"order={n}",
            "Code": "LimitExceeded.PhoneNumberDailyLimit" if failed else "Ok",
            "Message": "the number of sms messages sent from a single mobile number every day exceeds the upper limit"
            if failed else "send success",
            "IsoCode": "CN",
            "SendTime": 1_790_000_000 + n // 20,
            "SmsSdkAppId": "1400006666",
            "TemplateId": str(1110 + n % 7),
            "SignName": "Tencent Cloud",
        })
    return out


def write_log(path: Path, file_format: str, first: int, count: int, *, append: bool = False) -> None:
    import orjson
    import polars as pl

    if file_format == "parquet":
        if append:
            raise SystemExit("a Parquet file cannot be appended to")
        frames = (pl.DataFrame(records(start, min(WRITE_BATCH, first + count - start)))
                  for start in range(first, first + count, WRITE_BATCH))
        pl.concat(list(frames)).write_parquet(path)
        return
    with path.open("ab" if append else "wb") as out:
        if file_format == "csv" and not append:
            out.write((",".join(FIELDS) + "\n").encode())
        for start in range(first, first + count, WRITE_BATCH):
            batch = records(start, min(WRITE_BATCH, first + count - start))
            if file_format == "ndjson":
                out.write(b"".join(orjson.dumps(r) + b"\n" for r in batch))
            else:
                pl.DataFrame(batch).write_csv(out, include_header=False)


def child(path: str, db: str, file_format: str, rows: int, append_rows: int) -> None:
    """One repetition, in its own process; prints its measurements as one JSON line."""
    from pipelines.warehouse.db import open_warehouse
    from pipelines.warehouse.sending_app import load_source_files

    def cpu(who: int) -> float:
        usage = resource.getrusage(who)
        return usage.ru_utime + usage.ru_stime

    result: dict = {}
    with open_warehouse(db) as con:
        cpu_self, cpu_children = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        report = load_source_files(con, "sends", path)
        result["load"] = {
            "seconds": time.perf_counter() - started, "rows": report.rows, "quarantined": report.quarantined,
            "cpu_self": cpu(resource.RUSAGE_SELF) - cpu_self, "cpu_children": cpu(resource.RUSAGE_CHILDREN) - cpu_children,
        }
        if append_rows:
            write_log(Path(path), file_format, rows, append_rows, append=True)
            cpu_self, cpu_children = cpu(resource.RUSAGE_SELF), cpu(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            again = load_source_files(con, "sends", path)
            result["append"] = {
                "seconds": time.perf_counter() - started, "rows": again.rows,
                "cpu_self": cpu(resource.RUSAGE_SELF) - cpu_self,
                "cpu_children": cpu(resource.RUSAGE_CHILDREN) - cpu_children,
            }
        result["table_rows"] = con.execute("select count(*) from raw.sends").fetchone()[0]
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["children_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--format", choices=("ndjson", "csv", "parquet"), default="ndjson")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--append-rows", type=int, default=0)
    parser.add_argument("--dir", help="where the input and the warehouse go (default: a temporary folder)")
    parser.add_argument("--input", help="a sends log of --rows records written by an earlier run (kept)")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "DB"), help=argparse.SUPPRESS)
    ns = parser.parse_args()
    if ns.child:
        child(ns.child[0], ns.child[1], ns.format, ns.rows, ns.append_rows)
        return

    with tempfile.TemporaryDirectory(dir=ns.dir) as folder:
        source = Path(ns.input) if ns.input else Path(folder) / f"sends.{ns.format}"
        started = time.perf_counter()
        if not ns.input:
            write_log(source, ns.format, 0, ns.rows)
        print(f"input: {ns.rows:,} rows, {source.stat().st_size / 2**20:,.0f} MiB of {ns.format}, "
              f"written in {time.perf_counter() - started:.1f}s", flush=True)
        runs = []
        for repetition in range(ns.repeat):
            path = Path(folder) / f"run{repetition}.{ns.format}"
            shutil.copyfile(source, path)  # the append must not change the input of the next run
            db = Path(folder) / f"run{repetition}.duckdb"
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.sending_app_bench", "--child", str(path), str(db),
                 "--format", ns.format, "--rows", str(ns.rows), "--append-rows", str(ns.append_rows)],
                check=True, capture_output=True, text=True,
            )
            run = json.loads(out.stdout.strip().splitlines()[-1])
            runs.append(run)
            load = run["load"]
            line = (f"run {repetition}: {load['seconds']:.2f}s, {load['rows'] / load['seconds']:,.0f} rows/s, "
                    f"cpu {load['cpu_self']:.1f}s + children {load['cpu_children']:.1f}s, "
                    f"peak RSS {run['peak_rss_mib']:,.0f} MiB (children {run['children_peak_rss_mib']:,.0f} MiB)")
            if "append" in run:
                append = run["append"]
                line += (f"; append of {ns.append_rows:,}: {append['seconds']:.2f}s, {append['rows']:,} rows, "
                         f"cpu {append['cpu_self']:.1f}s + {append['cpu_children']:.1f}s")
            print(line + f"; raw.sends {run['table_rows']:,}", flush=True)
            db.unlink()
            path.unlink()
        seconds = statistics.median(r["load"]["seconds"] for r in runs)
        print(f"median: {seconds:.2f}s, {ns.rows / seconds:,.0f} rows/s, "
              f"cpu {statistics.median(r['load']['cpu_self'] + r['load']['cpu_children'] for r in runs):.1f}s, "
              f"peak RSS {statistics.median(r['peak_rss_mib'] for r in runs):,.0f} MiB "
              f"(children {statistics.median(r['children_peak_rss_mib'] for r in runs):,.0f} MiB)")


if __name__ == "__main__":
    main()
