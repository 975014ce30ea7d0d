"""`smsledger demo`: the main job on the embedded default.

Starts the simulator on a free loopback port with a seeded week of traffic that ends at today's
midnight (UTC), points the pipeline at it with a warehouse under data/, drains the queues,
materializes the last 7 daily partitions through Dagster on the local instance (so the runs show
in the UI afterwards), stops the simulator and prints a summary.

The traffic is a function of the seed and the day, so running the demo twice on a day gives the
same warehouse; a demo warehouse made on an earlier day holds another week and is started afresh.

With SMSLEDGER_WAREHOUSE naming a lake (`make lake-demo` makes one), the demo builds that lake
instead of its DuckDB file, its other files in data/demo-lake/. A lake is not the demo's to empty:
it must be new, or hold the same week from an earlier demo.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from pipelines.config import DEMO_SDK_APP_ID, DEMO_SECRET_ID, DEMO_SECRET_KEY, ConfigError, Settings, Warehouse, is_lake

DEMO_DAYS = 7
DEMO_SEED = 20261126
DEMO_MESSAGES_PER_DAY = 20_000
# The demo's simulator grants this multiple of the documented per-action rate limits (and the
# demo's client keeps to it), so the demo's 300-odd statistics calls and 1,500 pulls take seconds.
DEMO_RATE_SCALE = 5.0
# A demo on a lake lets this many steps write at once (two backfills, or `backfill --writers 4`).
LAKE_POOL_LIMIT = 4


def demo_warehouse(data_dir: Path = Path("data")) -> Path:
    """Where the demo keeps its warehouse, apart from the user's."""
    return data_dir / "demo" / "warehouse.duckdb"


def demo_instance(demo_dir: Path, pool_limit: int = 1) -> Path:
    """The demo's own Dagster instance: its runs and plots never mix with those of your warehouse.
    `pool_limit`: how many steps write the warehouse at once (1 for a DuckDB file)."""
    from pipelines.app.runner import INSTANCE_DEFAULTS

    home = demo_dir / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_DEFAULTS.replace("default_limit: 1", f"default_limit: {pool_limit}"))
    return home.resolve()


def demo_settings(base: Settings, endpoint: str, demo_dir: Path, first_day: dt.date,
                  warehouse: Warehouse | None = None) -> Settings:
    """The user's settings pointed at the simulator and the demo's own folder: its public keys,
    its application, its files, its Dagster instance, its warehouse (`warehouse`, else a DuckDB
    file in the folder); the partition zone stays the user's."""
    sim_files = demo_dir / "simulator"
    return dataclasses.replace(
        base, endpoint=endpoint, secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY, session_token=None,
        demo_credentials=True, sdk_app_ids=(DEMO_SDK_APP_ID,), warehouse=warehouse or demo_dir / "warehouse.duckdb",
        spool_dir=demo_dir / "spool", sends_path=str(sim_files / "sends.ndjson"),
        conversions_path=str(sim_files / "conversions.ndjson"), start_date=first_day, rate_limit_scale=DEMO_RATE_SCALE,
        dagster_home=demo_instance(demo_dir, LAKE_POOL_LIMIT if is_lake(warehouse) else 1),
    )


def demo_simulator_config(end: dt.datetime, sim_files: Path, *, days: int = DEMO_DAYS,
                          messages_per_day: int = DEMO_MESSAGES_PER_DAY, seed: int = DEMO_SEED):
    """The demo's simulator: its seeded traffic of `days` days ending at `end`, on a free port."""
    from pipelines.simulator.config import SimulatorConfig

    return SimulatorConfig(host="127.0.0.1", port=0, seed=seed, days=days, messages_per_day=messages_per_day,
                           out_dir=sim_files, now=end.timestamp(), clock_runs=False, rate_scale=DEMO_RATE_SCALE,
                           secret_id=DEMO_SECRET_ID, secret_key=DEMO_SECRET_KEY, sdk_app_id=DEMO_SDK_APP_ID)


def run_demo(
    base: Settings,
    data_dir: Path = Path("data"),
    *,
    messages_per_day: int = DEMO_MESSAGES_PER_DAY,
    days: int = DEMO_DAYS,
    seed: int = DEMO_SEED,
    log: Callable[[str], None] = print,
) -> str:
    """Run the demo; returns the printed summary."""
    from pipelines.app.runner import last_complete_day, run_days, run_drain
    from pipelines.simulator.server import Simulator
    from pipelines.app.summary import summary

    started = time.monotonic()
    # The traffic ends at today's midnight in the partition zone, so the demo's days are whole.
    last_day = last_complete_day(base)
    today = last_day + dt.timedelta(days=1)
    end = dt.datetime.combine(today, dt.time(0), base.tz)
    first_day = today - dt.timedelta(days=days)

    on_lake = is_lake(base.warehouse)
    warehouse = base.warehouse if on_lake else demo_warehouse(data_dir)
    demo_dir = data_dir / "demo-lake" if on_lake else warehouse.parent
    stamp = demo_dir / "traffic-day"
    traffic = f"{today}:{seed}:{messages_per_day}:{days}"
    if on_lake:
        _check_lake_is_the_demos(warehouse, stamp, traffic)
    elif stamp.exists() and stamp.read_text().strip() != traffic:
        log(f"the demo warehouse holds an earlier week's traffic; starting afresh in {demo_dir}")
        shutil.rmtree(demo_dir)
    demo_dir.mkdir(parents=True, exist_ok=True)
    sim_files = demo_dir / "simulator"

    log(f"starting the simulator: {days} days x {messages_per_day:,} messages/day, seed {seed} ...")
    with Simulator(demo_simulator_config(end, sim_files, days=days, messages_per_day=messages_per_day, seed=seed)) as sim:
        log(f"simulator on {sim.url} ({time.monotonic() - started:.1f}s); it grants {DEMO_RATE_SCALE:g}x the documented "
            "rate limits, as Tencent does for accounts that ask, so the demo takes a minute")
        settings = demo_settings(base, sim.url, demo_dir, first_day, warehouse)
        run_drain(settings, log=log)
        run_days(settings, first_day, last_day, log=log)
    stamp.write_text(traffic)
    text = summary(warehouse, first_day, last_day, base.timezone)
    log(text)
    log(f"demo finished in {time.monotonic() - started:.0f}s. Next:\n"
        + ("" if on_lake else "  make demo-ui   and open http://127.0.0.1:3000: the demo's runs, each day's figures, the checks\n")
        + f"  SMSLEDGER_WAREHOUSE={warehouse} .venv/bin/smsledger sql "
        "\"select day, sum(delivered) delivered, sum(submitted) submitted from marts.delivery_daily group by day order by day\"")
    return text


def _check_lake_is_the_demos(warehouse: Warehouse, stamp: Path, traffic: str) -> None:
    """Refuse a lake that holds tables the demo did not make for this week: it may be the user's."""
    from pipelines.warehouse.db import connect

    con = connect(warehouse)  # not read-only: a new lake is created here, as by the demo's first step
    try:
        tables = con.execute("select count(*) from duckdb_tables() where database_name = current_database()").fetchone()[0]
    finally:
        con.close()
    if tables and not (stamp.exists() and stamp.read_text().strip() == traffic):
        raise ConfigError(f"the demo builds an empty lake (or its own of this week), and {warehouse} already holds "
                          "tables: name a new catalog database in SMSLEDGER_WAREHOUSE (make lake-demo makes one)")
