"""Marts from staging, by SQL files in sql/: each build rewrites its days' slice in one
transaction."""

from __future__ import annotations

import duckdb

from pipelines.warehouse.db import sql_text, transaction
from pipelines.warehouse.staging import DayRange

# mart table -> (its day column, the SQL file that inserts its slice)
MARTS = {
    "marts.message_status": ("send_date", "build_message_status"),
    "marts.replies": ("reply_date", "build_replies"),
}


def rebuild(con: duckdb.DuckDBPyConnection, table: str, days: DayRange, **params: object) -> int:
    """Replace the days' rows of a mart; returns the rows written."""
    day_column, sql_file = MARTS[table]
    bounds = {"first_day": days.first, "last_day": days.last}
    with transaction(con):
        con.execute(f"delete from {table} where {day_column} between $first_day and $last_day", bounds)
        con.execute(sql_text(sql_file), {**bounds, **params})
        (rows,) = con.execute(f"select count(*) from {table} where {day_column} between $first_day and $last_day",
                              bounds).fetchone()
    return rows
