"""`make lake-demo`: the demo on a DuckLake, then two backfills writing it at once.

A throwaway PostgreSQL on loopback (local_postgres.py; `make postgres` installs Debian's) holds
the lake's catalog, data/demo-lake/lake/ its Parquet files. `smsledger demo` builds the lake from
the simulator's week, as a user runs it; then two `smsledger backfill` processes rebuild the
first and the last days of the week at the same moment (on a DuckDB file the second would wait
for the first), against the same simulator; then `smsledger sql` reads the lake. Postgres stops
at the end, and its catalog with it: the demo shows the lake, it does not keep one.

    python -m pipelines.app.lake_demo [--messages-per-day N] [--days N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from pipelines.app.demo import DEMO_DAYS, DEMO_MESSAGES_PER_DAY, demo_settings, demo_simulator_config
from pipelines.app.local_postgres import postgres_server
from pipelines.config import LakeLocation, Settings

DEMO_DIR = Path("data/demo-lake")


def smsledger_env(settings: Settings, password: str) -> dict[str, str]:
    """The environment of a `smsledger` process on the demo's lake, simulator and instance: the
    machine's own SMSLEDGER_/TENCENTCLOUD_/PG variables left out, the catalog's password in
    PGPASSWORD (never in the warehouse URI)."""
    return {**_own_env(), "SMSLEDGER_ENDPOINT": settings.endpoint, "SMSLEDGER_WAREHOUSE": str(settings.warehouse),
            "SMSLEDGER_LAKE_DATA_PATH": settings.warehouse.data_path, "SMSLEDGER_SPOOL_DIR": str(settings.spool_dir),
            "SMSLEDGER_SENDS_PATH": settings.sends_path, "SMSLEDGER_CONVERSIONS_PATH": settings.conversions_path,
            "SMSLEDGER_START_DATE": settings.start_date.isoformat(),
            "SMSLEDGER_RATE_LIMIT_SCALE": f"{settings.rate_limit_scale:g}", "SMSLEDGER_TIMEZONE": settings.timezone,
            "DAGSTER_HOME": str(settings.dagster_home), "PGPASSWORD": password}


def _own_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("SMSLEDGER_", "TENCENTCLOUD_", "PG", "DAGSTER_"))}


def run_smsledger(env: dict[str, str], *args: str, prefix: str = "") -> tuple[int, float]:
    """`smsledger ARGS` in its own process, its lines printed as they come (after `prefix`);
    returns its exit code and wall seconds."""
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-u", "-m", "pipelines.app.cli", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in process.stdout:
        print(prefix + line, end="", flush=True)
    return process.wait(), time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make lake-demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages-per-day", type=int, default=DEMO_MESSAGES_PER_DAY)
    parser.add_argument("--days", type=int, default=DEMO_DAYS)
    ns = parser.parse_args(argv)
    shutil.rmtree(DEMO_DIR, ignore_errors=True)  # its catalog died with the last demo's Postgres
    DEMO_DIR.mkdir(parents=True)
    print("starting a throwaway PostgreSQL for the lake's catalog ...", flush=True)
    with postgres_server() as server:
        location = LakeLocation(server.conninfo(server.create_database("smsledger_demo")),
                                str((DEMO_DIR / "lake").resolve()) + "/")
        print(f"PostgreSQL on {server.host}:{server.port}; the lake: SMSLEDGER_WAREHOUSE={location} "
              f"SMSLEDGER_LAKE_DATA_PATH={location.data_path} (password in PGPASSWORD)\n", flush=True)
        base = Settings.from_env({}, require_credentials=False)
        # `smsledger demo` as a user runs it, given the lake: the week drained and built into it
        env = {**_own_env(), "SMSLEDGER_WAREHOUSE": str(location), "SMSLEDGER_LAKE_DATA_PATH": location.data_path,
               "PGPASSWORD": server.password}
        code, _ = run_smsledger(env, "demo", "--messages-per-day", str(ns.messages_per_day), "--days", str(ns.days))
        if code != 0:
            return code
        return _two_backfills_at_once(base, location, server.password, ns)


def _two_backfills_at_once(base: Settings, location: LakeLocation, password: str, ns: argparse.Namespace) -> int:
    from pipelines.app.runner import last_complete_day
    from pipelines.simulator.server import Simulator

    last = last_complete_day(base)
    first = last - dt.timedelta(days=ns.days - 1)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(0), base.tz)
    config = demo_simulator_config(end, DEMO_DIR / "simulator", days=ns.days, messages_per_day=ns.messages_per_day)
    halves = [(first, first + dt.timedelta(days=ns.days // 2 - 1)), (first + dt.timedelta(days=ns.days // 2), last)]
    print(f"\ntwo backfills at once on the lake: {halves[0][0]}..{halves[0][1]} and {halves[1][0]}..{halves[1][1]} "
          "(each its own process; on a DuckDB file the second would wait for the first)", flush=True)
    with Simulator(config) as sim:
        env = smsledger_env(demo_settings(base, sim.url, DEMO_DIR, first, location), password)
        results: dict[int, tuple[int, float]] = {}
        started = time.monotonic()

        def backfill(index: int) -> None:
            a, b = halves[index]
            results[index] = run_smsledger(env, "backfill", "--skip-drain", "--start", a.isoformat(), "--end",
                                           b.isoformat(), prefix=f"[backfill {a}..{b}] ")

        threads = [threading.Thread(target=backfill, args=(index,)) for index in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
    if any(code != 0 for code, _ in results.values()):
        print("a backfill failed: see its lines above")
        return 1
    print(f"\nboth landed: {results[0][1]:.0f}s and {results[1][1]:.0f}s each, {wall:.0f}s for the two\n", flush=True)
    code, _ = run_smsledger(env, "sql", "select day, sum(submitted) submitted, sum(delivered) delivered "
                                        "from marts.delivery_daily group by day order by day")
    print(f"\nThe lake's files stay in {location.data_path}; its catalog stops with this PostgreSQL. To keep a "
          "lake, give SMSLEDGER_WAREHOUSE a PostgreSQL of your own (README: Deployment).")
    return code


if __name__ == "__main__":
    sys.exit(main())
