"""Wall and CPU time of a backfill (`smsledger backfill --skip-drain`) of the simulator's week on a
DuckDB file and on a DuckLake with 1, 2 and 4 writers (`--writers N`).

The week is drained once into a lake (catalog in a throwaway PostgreSQL, local_postgres.py; data
in a temporary folder); its raw tables are copied into a DuckDB file, so both warehouses build
the same rows. Each backfill runs as a user runs it, in its own process, against the same
simulator (the daily job also asks it for statistics), `--repeat` times in turn. CPU seconds: the
backfill's process tree (user + system, from getrusage of waited-for children) and, on a lake,
PostgreSQL's (the server and its finished backends, from /proc).

    python -m benchmarks.lake_writers [--messages-per-day N] [--days N] [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.app.demo import demo_settings, demo_simulator_config
from pipelines.app.lake_demo import smsledger_env
from pipelines.app.local_postgres import postgres_server
from pipelines.app.runner import last_complete_day, run_drain
from pipelines.config import LakeLocation, Settings
from pipelines.simulator.server import Simulator
from pipelines.warehouse.db import open_warehouse


def _process_tree_cpu(pid: int) -> float:
    """CPU seconds of `pid`, its live children and its finished ones (PostgreSQL's backends)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        proc, parent = int(stat.parent.name), int(fields[1])
        if proc == pid:
            total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
        elif parent == pid:
            total += int(fields[11]) + int(fields[12])
    return total / tick


def _postmaster_pid(port: int) -> int:
    found = subprocess.run(["pgrep", "-f", f"postgres -D .* -p {port} "], capture_output=True, text=True)
    return int(found.stdout.split()[0])


def _copy_raw(lake: LakeLocation, file: Path, folder: Path) -> None:
    """The lake's raw tables into a new DuckDB file (through Parquet)."""
    with open_warehouse(lake) as con:
        tables = [name for (name,) in con.execute("select table_name from duckdb_tables() where schema_name = 'raw' "
                                                  "and database_name = current_database()").fetchall()]
        for table in tables:
            con.execute(f"copy (select * from raw.{table}) to '{folder / table}.parquet'")
    with open_warehouse(file) as con:
        for table in tables:
            con.execute(f"insert into raw.{table} by name select * from read_parquet('{folder / table}.parquet')")


def _backfill(env: dict[str, str], first: dt.date, last: dt.date, writers: int, pg_pid: int | None) -> tuple[float, float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    pg_before = _process_tree_cpu(pg_pid) if pg_pid else 0.0
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "pipelines.app.cli", "backfill", "--skip-drain", "--start",
                           first.isoformat(), "--end", last.isoformat(), "--writers", str(writers)],
                          env=env, capture_output=True, text=True)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"backfill --writers {writers} failed:\n{done.stdout}\n{done.stderr}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    pg_cpu = (_process_tree_cpu(pg_pid) - pg_before) if pg_pid else 0.0
    return wall, cpu, pg_cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.lake_writers")
    parser.add_argument("--messages-per-day", type=int, default=20_000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=2)
    ns = parser.parse_args(argv)
    base = Settings.from_env({}, require_credentials=False)
    last = last_complete_day(base)
    first = last - dt.timedelta(days=ns.days - 1)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), base.tz)
    with tempfile.TemporaryDirectory(prefix="smsledger-lake-bench-") as tmp, postgres_server() as server:
        root = Path(tmp)
        os.environ["PGPASSWORD"] = server.password  # this process's own connections to the lake
        lake = LakeLocation(server.conninfo(server.create_database("bench")), str(root / "lake") + "/")
        config = demo_simulator_config(end, root / "simulator", days=ns.days, messages_per_day=ns.messages_per_day)
        with Simulator(config) as sim:
            settings = demo_settings(base, sim.url, root, first, lake)
            started = time.monotonic()
            run_drain(settings, log=lambda _: None)
            print(f"drained {ns.days} days x {ns.messages_per_day:,} messages into the lake in "
                  f"{time.monotonic() - started:.0f}s", flush=True)
            file = root / "warehouse.duckdb"
            _copy_raw(lake, file, root)
            lake_env = smsledger_env(settings, server.password)
            file_env = {**lake_env, "SMSLEDGER_WAREHOUSE": str(file)}
            del file_env["SMSLEDGER_LAKE_DATA_PATH"]
            pg_pid = _postmaster_pid(server.port)
            cases = [("DuckDB file", file_env, 1, None)] + [
                (f"DuckLake, {n} writer{'s' if n > 1 else ''}", lake_env, n, pg_pid) for n in (1, 2, 4)]
            results: dict[str, list[tuple[float, float, float]]] = {name: [] for name, *_ in cases}
            for repetition in range(ns.repeat):
                for name, env, writers, pid in cases:
                    results[name].append(_backfill(env, first, last, writers, pid))
                    wall, cpu, pg_cpu = results[name][-1]
                    print(f"  {name}: {wall:.1f}s wall, {cpu:.1f} CPU-s (+ PostgreSQL {pg_cpu:.1f}), "
                          f"load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"\n{ns.days}-day backfill of {ns.days * ns.messages_per_day:,} messages (median of {ns.repeat})")
    print("| warehouse | wall s | CPU s (backfill) | CPU s (PostgreSQL) |\n| --- | --- | --- | --- |")
    for name, runs in results.items():
        walls, cpus, pgs = zip(*runs)
        print(f"| {name} | {statistics.median(walls):.1f} ({min(walls):.1f}-{max(walls):.1f}) | "
              f"{statistics.median(cpus):.1f} | {statistics.median(pgs):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
