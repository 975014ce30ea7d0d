"""`smsledger sql`: read-only SQL on the warehouse, printed as a table, CSV or JSON.

A read-only DuckDB connection is refused while a writer process holds the file; writers hold it
only for one step at a time, so the query waits for the step to finish (up to a minute) instead
of failing."""

from __future__ import annotations

import io
from pathlib import Path

import duckdb
import orjson

from pipelines.warehouse.db import connect


class QueryError(ValueError):
    """A bad query or a missing warehouse, as one line."""


def run_query(warehouse: Path, query: str, fmt: str = "table", *, wait_seconds: float = 60.0) -> str:
    if not Path(warehouse).exists():
        raise QueryError(f"no warehouse at {warehouse} yet: run `make demo` or `smsledger sync` first "
                         "(or set SMSLEDGER_WAREHOUSE)")
    try:
        con = connect(warehouse, read_only=True, wait_seconds=wait_seconds)
    except duckdb.Error as exc:
        raise QueryError(f"cannot open {warehouse}: {' '.join(str(exc).split())}") from None
    try:
        try:
            relation = con.sql(query)
        except duckdb.Error as exc:
            raise QueryError(" ".join(str(exc).split())) from None
        if relation is None:
            return ""
        try:
            frame = relation.pl()
        except duckdb.Error as exc:
            raise QueryError(" ".join(str(exc).split())) from None
    finally:
        con.close()
    if fmt == "csv":
        return frame.write_csv()
    if fmt == "json":
        return orjson.dumps(frame.to_dicts(), option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATETIME,
                            default=str).decode() + "\n"
    import polars as pl

    buffer = io.StringIO()
    with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=60, tbl_width_chars=200, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True, tbl_hide_dtype_separator=True):
        buffer.write(str(frame))
    buffer.write(f"\n({frame.height} row{'s' if frame.height != 1 else ''})\n")
    return buffer.getvalue()
