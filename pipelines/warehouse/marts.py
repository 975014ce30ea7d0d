"""Marts from staging, by SQL files in sql/: each build rewrites its days' slice in one
transaction."""

from __future__ import annotations

from typing import NamedTuple

import duckdb

from pipelines.config import DEMO_SDK_APP_ID
from pipelines.warehouse import lake
from pipelines.warehouse.db import sql_text, transaction
from pipelines.days import DayRange


class Mart(NamedTuple):
    """The SQL file that inserts a slice of a mart, and the column that places a row in a slice:
    a DATE of the partition zone (daily marts), or a UTC instant (hourly marts), which is compared
    with the days' UTC bounds so that the process or session time zone never shifts the slice."""

    column: str
    sql_file: str
    hourly: bool = False
    defaults: dict[str, object] = {}  # parameters of the SQL file a caller may leave out


MARTS = {
    "marts.message_status": Mart("send_date", "marts/message_status"),
    "marts.replies": Mart("reply_date", "marts/replies"),
    "marts.delivery_daily": Mart("day", "marts/delivery_daily"),
    "marts.conversion_daily": Mart("day", "marts/conversion_daily"),
    "marts.failure_reasons_daily": Mart("day", "marts/failure_reasons_daily"),
    "marts.spend_daily": Mart("day", "marts/spend_daily"),
    "marts.provider_statistics_hourly": Mart("hour", "marts/provider_statistics_hourly", hourly=True),
    "marts.reconciliation_daily": Mart("day", "marts/reconciliation_daily", defaults={"first_app": DEMO_SDK_APP_ID}),
}


@lake.retry_conflicts
def rebuild(con: duckdb.DuckDBPyConnection, table: str, days: DayRange, **params: object) -> int:
    """Replace the days' rows of a mart; returns the rows written. The SQL file gets the slice's
    bounds ($first_day/$last_day, or $start/$end for an hourly mart) and `params`."""
    mart = MARTS[table]
    if mart.hourly:
        bounds: dict[str, object] = days.instants()
        where = f"{mart.column} >= $start and {mart.column} < $end"
    else:
        bounds = days.dates()
        where = f"{mart.column} between $first_day and $last_day"
    with transaction(con):
        con.execute(f"delete from {table} where {where}", bounds)
        con.execute(sql_text(mart.sql_file), {**mart.defaults, **bounds, **params})
        (rows,) = con.execute(f"select count(*) from {table} where {where}", bounds).fetchone()
    return rows
