"""What a daily step tells the instance about each of its days: the materialization metadata of
every partition, and the result of every partitioned check, per day.

A single-run backfill (one run over many days, the daily run over the lookback window) is one
step per asset; whatever it returns is recorded for every partition of the range. So a step
reports its figures day by day: `report_days` attaches each day's own row of a report query to
that day's materialization, and `evaluate_days` records one check evaluation per day.
"""

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import dagster as dg
import duckdb

from pipelines.days import DayRange
from pipelines.warehouse.db import sql_text

# DuckDB's names of the column types a report returns, by the metadata they become.
_INTEGER_TYPES = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER",
                  "UBIGINT", "UHUGEINT"}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}


def report_days(context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, report: str, days: DayRange,
                params: Mapping[str, object], *, asset_key: dg.AssetKey | None = None) -> dict[dt.date, dict[str, Any]]:
    """Run sql/reports/`report`.sql (one row per `day`) and attach each day's row to that day's
    materialization; a day without a row gets zeros (counts) and nulls (rates). A column named
    `rows` becomes Dagster's `dagster/row_count`. Returns the rows by day, as Python values."""
    cursor = con.execute(sql_text(f"reports/{report}"), dict(params))
    columns = [(name, str(type_code).upper()) for name, type_code, *_ in cursor.description]
    by_day = {row[0]: dict(zip((name for name, _ in columns), row, strict=True)) for row in cursor.fetchall()}
    for day in days.days():
        values = by_day.get(day)
        metadata = {}
        for name, type_name in columns[1:]:
            value = values[name] if values else None
            metadata["dagster/row_count" if name == "rows" else name] = _metadata_value(value, type_name, missing=not values)
        context.add_asset_metadata(metadata, asset_key=asset_key, partition_key=day.isoformat())
    return by_day


def _metadata_value(value: Any, type_name: str, *, missing: bool) -> dg.MetadataValue:
    if type_name in _INTEGER_TYPES:
        return dg.IntMetadataValue(0 if missing else (None if value is None else int(value)))
    if type_name in _FLOAT_TYPES or type_name.startswith("DECIMAL"):
        return dg.FloatMetadataValue(None if value is None else float(value))
    if type_name == "BOOLEAN":
        return dg.BoolMetadataValue(value)
    return dg.TextMetadataValue("" if value is None else str(value))


def column_schema(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, dg.TableSchema]:
    """`dagster/column_schema` of a warehouse table, as DuckDB has it."""
    schema, name = table.split(".")
    rows = con.execute(
        "select column_name, data_type, is_nullable from information_schema.columns "
        "where table_schema = $schema and table_name = $name order by ordinal_position",
        {"schema": schema, "name": name},
    ).fetchall()
    return {"dagster/column_schema": dg.TableSchema(columns=[
        dg.TableColumn(column, data_type.lower(), constraints=dg.TableColumnConstraints(nullable=nullable == "YES"))
        for column, data_type, nullable in rows
    ])}


@dataclasses.dataclass(frozen=True)
class DayResult:
    """One day's result of a partitioned check."""

    passed: bool
    description: str | None = None
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def evaluate_days(context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, check_name: str,
                  days: Iterable[dt.date], evaluate: Callable[[dt.date], DayResult]) -> Iterator[Any]:
    """One evaluation per day of a partitioned check, then the check's output (which carries no
    evaluation of its own, so a range run records exactly one result per day and nothing else)."""
    for day in days:
        result = evaluate(day)
        yield dg.AssetCheckEvaluation(
            asset_key=asset_key, check_name=check_name, passed=result.passed, partition=day.isoformat(),
            severity=result.severity, description=result.description,
            metadata={key: value for key, value in result.metadata.items()},
        )
    yield dg.Output(None, output_name=context.op_execution_context.op_def.output_defs[0].name)
