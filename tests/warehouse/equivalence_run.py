"""The whole path from spool and sending-application files to the marts, run by
tests/warehouse/test_equivalence.py once with the code of the base commit and once with the code
under test, each in its own process: whichever `pipelines` package comes first on sys.path is the
one that runs. Every raw, staging and mart table (or view) is then exported to Parquet.

    python equivalence_run.py INPUT_DIR WAREHOUSE OUT_DIR

Only calls that both versions have: load_spool, load_source_files, build_messages, build_replies
and marts.rebuild, as the daily schedule makes them (one partition day at a time), then once more
over the whole range (as a single-run backfill rebuilds it).
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

TIMEZONE = "Asia/Shanghai"  # a partition zone that is not UTC, so day boundaries matter
FIRST_DAY, LAST_DAY = dt.date(2026, 10, 24), dt.date(2026, 11, 1)
MART_ORDER = ("marts.message_status", "marts.replies", "marts.delivery_daily", "marts.conversion_daily",
              "marts.failure_reasons_daily", "marts.provider_statistics_hourly", "marts.reconciliation_daily")
MART_PARAMS = {
    "marts.message_status": {"attribution_days": 7},
    "marts.replies": {"attribution_hours": 72, "opt_out_words": ["stop", "退订", "td", "unsubscribe"]},
    "marts.provider_statistics_hourly": {"timezone": TIMEZONE},
}


def main(input_dir: Path, warehouse: Path, out: Path) -> None:
    from pipelines.days import DayRange
    from pipelines.spool import Spool
    from pipelines.warehouse.db import open_warehouse
    from pipelines.warehouse.loader import load_spool
    from pipelines.warehouse.marts import rebuild
    from pipelines.warehouse.sending_app import load_source_files
    from pipelines.warehouse.staging import build_messages, build_replies

    tz = ZoneInfo(TIMEZONE)
    whole = DayRange(FIRST_DAY, LAST_DAY, tz)
    out.mkdir(parents=True, exist_ok=True)
    with open_warehouse(warehouse) as con:
        # Two loads, so that records repeated across them are deduplicated against stored rows.
        for spool in sorted(input_dir.glob("spool_*")):
            load_spool(con, Spool(spool))
        load_source_files(con, "sends", str(input_dir / "sends" / "*"))
        load_source_files(con, "conversions", str(input_dir / "conversions" / "*"))
        con.execute(open(input_dir / "statistics.sql").read())
        # Hours written by hand name no application (the base's table may have no such column):
        # they are the first application's, as a drain of one application stores them.
        if "sms_sdk_app_id" in [name for (name, *_) in con.execute("describe raw.statistics_hourly").fetchall()]:
            con.execute("update raw.statistics_hourly set sms_sdk_app_id = '1400000000' where sms_sdk_app_id is null")
        for day in whole.days():
            one = DayRange(day, day, tz)
            build_messages(con, one)
            build_replies(con, one)
            for table in MART_ORDER:
                rebuild(con, table, one, **MART_PARAMS.get(table, {}))
        build_messages(con, whole)
        build_replies(con, whole)
        for table in MART_ORDER:
            rebuild(con, table, whole, **MART_PARAMS.get(table, {}))
        relations = con.execute(
            "select schema_name || '.' || table_name from duckdb_tables() where database_name = current_database() "
            "and schema_name in ('raw', 'staging', 'marts') union "
            "select schema_name || '.' || view_name from duckdb_views() where database_name = current_database() "
            "and schema_name in ('raw', 'staging', 'marts') and not internal order by 1").fetchall()
        for (name,) in relations:
            con.execute(f"copy (select * from {name}) to '{out / name}.parquet' (format parquet)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
