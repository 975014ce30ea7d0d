"""`smsledger sql`: one statement that reads the warehouse, printed as a table, CSV or JSON.

What may run. The connection comes from pipelines/warehouse/db.py's `connect(read_only=True)`,
which reads its database file (or lake) and nothing else (no other file, URL, database or
extension, and a locked configuration; a lake's data path stays open, so the statement check below
is what keeps COPY out of it). On top of that this command runs one statement, of a kind that reads:
SELECT in all its forms (WITH, FROM-first, VALUES, DESCRIBE, SHOW, SUMMARIZE, a PIVOT that lists
its values, and the PRAGMAs that show something, which DuckDB itself turns into SELECTs:
`pragma table_info('t')`, `pragma show_tables`, `pragma database_size`, `pragma version`) and
EXPLAIN (EXPLAIN ANALYZE runs its statement on the same locked connection). Every other kind
(COPY, ATTACH, INSTALL/LOAD, SET, CALL, CREATE, a PRAGMA that changes the session, ...) is
refused by the kind DuckDB's parser gives it, before anything runs.

Output. DuckDB renders every value (cast to text for the table and CSV, `to_json` for JSON), so
any DuckDB type prints as DuckDB writes it. Rows are fetched in batches: CSV and JSON stream, the
table shows the first TABLE_ROWS rows and counts the rest without holding them.

Waiting. A read-only connection is refused while a writer process holds the file; writers hold it
only for one step at a time, so the query waits for the step to finish (up to a minute) instead
of failing, and says so if that takes more than a second.
"""

from __future__ import annotations

import csv
import itertools
import json
import sys
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

import duckdb

from pipelines.app.demo import demo_warehouse
from pipelines.config import Warehouse, is_lake, redact
from pipelines.warehouse.db import connect

TABLE_ROWS = 100  # the table is for looking; csv and json print everything
CELL_WIDTH = 60  # display columns of one table cell; longer values end in "…"
BATCH_ROWS = 10_000

_READING = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
_ALLOWED = "one SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN or PRAGMA that shows"
# Kinds whose parser name a person would not recognise.
_KIND_NAMES = {"LOAD": "INSTALL/LOAD", "SET": "SET/RESET/USE", "VARIABLE_SET": "SET VARIABLE", "VACUUM": "VACUUM/ANALYZE",
               "TRANSACTION": "BEGIN/COMMIT/ROLLBACK", "CALL": "CALL/CHECKPOINT", "PRAGMA": "PRAGMA that changes the session"}
_NUMBERS = frozenset({"tinyint", "smallint", "integer", "bigint", "hugeint", "utinyint", "usmallint", "uinteger",
                      "ubigint", "uhugeint", "float", "double", "decimal", "bignum"})


# Control characters in a table cell would break its line or drive the terminal: shown escaped.
_VISIBLE_CONTROLS = {code: f"\\x{code:02x}" for code in [*range(32), 127]} | {9: "\\t", 10: "\\n", 13: "\\r"}


class QueryError(ValueError):
    """A refused or bad query, or a missing warehouse, as one line."""


def _one_line(exc: Exception) -> str:
    return redact(" ".join(str(exc).split()))


def _print_to_stderr(text: str) -> None:
    print(f"smsledger sql: {text}", file=sys.stderr, flush=True)


def run_query(warehouse: Warehouse | str, query: str, fmt: str = "table", *, out: TextIO,
              note: Callable[[str], None] = _print_to_stderr, wait_seconds: float = 60.0) -> None:
    """Run `query` on the warehouse (a DuckDB file or a lake) and write its result to `out` in
    `fmt` (table, csv, json); `note` hears about a wait for a writer. Raises QueryError with one
    line (a lake that cannot be opened: the config's LakeConfigError, also one line)."""
    if not is_lake(warehouse):
        warehouse = Path(warehouse)
    if isinstance(warehouse, Path) and not warehouse.exists():
        raise QueryError(_missing_warehouse(warehouse))
    write = {"table": _write_table, "csv": _write_csv, "json": _write_json}[fmt]

    def waiting() -> None:
        note(f"waiting for another process (a sync?) to release {warehouse}, up to {wait_seconds:.0f}s ...")

    try:
        con = connect(warehouse, read_only=True, wait_seconds=wait_seconds, on_wait=waiting)
    except duckdb.Error as exc:
        raise QueryError(f"cannot open {warehouse}: {_one_line(exc)}") from None
    try:
        # Parsed on the locked connection: parsing IMPORT DATABASE already reads files.
        statements = con.extract_statements(query)
        _check_reads_only(statements)
        if fmt == "table" and statements[0].type == duckdb.StatementType.EXPLAIN:
            write = _write_plan
        write(con.sql(query), out)
    except duckdb.PermissionException as exc:
        raise QueryError(f"refused: {_one_line(exc)} (`smsledger sql` reads the warehouse and nothing else)") from None
    except duckdb.Error as exc:
        raise QueryError(_one_line(exc)) from None
    finally:
        con.close()


def _missing_warehouse(warehouse: Path) -> str:
    demo = demo_warehouse()
    if demo.exists() and demo.resolve() != warehouse.resolve():
        return f"no warehouse at {warehouse}; the demo's is {demo}: set SMSLEDGER_WAREHOUSE={demo}"
    return (f"no warehouse at {warehouse} yet: run `make demo` or `smsledger sync` first "
            "(or set SMSLEDGER_WAREHOUSE)")


def _check_reads_only(statements: list[duckdb.Statement]) -> None:
    if not statements:
        raise QueryError(f"the query is empty: give {_ALLOWED}, e.g. smsledger sql \"show tables\"")
    if len(statements) > 1:
        if statements[0].type == duckdb.StatementType.CREATE and not statements[0].query.strip():
            # DuckDB expands a PIVOT without its values into CREATE TYPE + SELECT.
            raise QueryError("a PIVOT must list its values here (PIVOT ... ON col IN (...)): "
                             "without them DuckDB creates a type first")
        raise QueryError(f"one statement at a time: the query holds {len(statements)}")
    statement = statements[0]
    if statement.type not in _READING:
        name = statement.type.name
        kind = _KIND_NAMES.get(name) or (name.replace("_", " ") if name.isupper() else "this statement")
        raise QueryError(f"refused: {kind} (`smsledger sql` only reads the warehouse: {_ALLOWED})")


def _batches(relation: duckdb.DuckDBPyRelation, columns: list[str]) -> Iterator[list[tuple]]:
    """The relation's rows in batches, projected to `columns`: SQL over its columns by position
    (#1, #2 ...), so duplicate or odd column names need no quoting."""
    projected = relation.project(", ".join(columns))
    while batch := projected.fetchmany(BATCH_ROWS):
        yield batch


def _lines(relation: duckdb.DuckDBPyRelation, line: str) -> Iterator[list[str]]:
    """Batches of one text line per row, the line built by DuckDB (quicker than Python per value)."""
    for batch in _batches(relation, [line]):
        yield [text for (text,) in batch]


def _positions(relation: duckdb.DuckDBPyRelation) -> list[str]:
    return [f"#{n}" for n in range(1, len(relation.columns) + 1)]


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# RFC 4180: a field holding a quote, comma or line break, or empty (to tell it from NULL, which
# is nothing), is quoted, its quotes doubled.
_CSV_FIELD = (r"""coalesce(case when {v} = '' or regexp_matches({v}, '[",\r\n]') """
              r"""then '"' || replace({v}, '"', '""') || '"' else {v} end, '')""")


def _write_csv(relation: duckdb.DuckDBPyRelation, out: TextIO) -> None:
    fields = [_CSV_FIELD.format(v=f"cast({column} as varchar)") for column in _positions(relation)]
    batches = _lines(relation, " || ',' || ".join(fields))
    first = next(batches, [])  # a query that fails at once fails before the header is printed
    csv.writer(out, lineterminator="\n").writerow(relation.columns)
    for batch in itertools.chain([first], batches):
        if batch:
            out.write("\n".join(batch) + "\n")


def _write_json(relation: duckdb.DuckDBPyRelation, out: TextIO) -> None:
    """An array of objects, one row a line. Numbers stay numbers (decimals and hugeints exact),
    lists, structs, maps and json columns nest, other values are strings as DuckDB writes them;
    NaN and infinities, which JSON lacks, are null."""
    members = [f"{_sql_text(json.dumps(key, ensure_ascii=False) + ':')} || coalesce(to_json({column}), 'null')"
               for key, column in zip(_unique(relation.columns), _positions(relation))]
    batches = _lines(relation, "'{' || " + " || ',' || ".join(members) + " || '}'")
    first = next(batches, [])  # a query that fails at once fails before anything is printed
    if not first:
        out.write("[]\n")
        return
    out.write("[\n")
    for n, batch in enumerate(itertools.chain([first], batches)):
        if n:
            out.write(",\n")
        out.write(",\n".join(map(_without_nan, batch)))
    out.write("\n]\n")


def _without_nan(line: str) -> str:
    """DuckDB writes NaN and infinities as bare NaN/Infinity, which JSON lacks: such a row (rare) is
    decoded and encoded again with null in their place, its numbers as Python reads them."""
    if "NaN" not in line and "Infinity" not in line:
        return line
    return json.dumps(json.loads(line, parse_constant=lambda _: None), ensure_ascii=False, separators=(",", ":"))


def _unique(names: list[str]) -> list[str]:
    """JSON keys: a repeated column name gets _1, _2 ... as in a DuckDB subquery."""
    seen: set[str] = set()
    keys = []
    for name in names:
        key, n = name, 0
        while key in seen:
            n += 1
            key = f"{name}_{n}"
        seen.add(key)
        keys.append(key)
    return keys


def _write_plan(relation: duckdb.DuckDBPyRelation, out: TextIO) -> None:
    """EXPLAIN as a table: the plans themselves, drawn as DuckDB draws them."""
    for _, plan in relation.fetchall():  # one row per plan
        out.write(plan.rstrip("\n") + "\n")


def _write_table(relation: duckdb.DuckDBPyRelation, out: TextIO) -> None:
    shown: list[list[str]] = []
    total = 0
    for batch in _batches(relation, [f"cast({column} as varchar)" for column in _positions(relation)]):
        for row in batch[: TABLE_ROWS - len(shown)]:
            shown.append([_cell(value) for value in row])
        total += len(batch)
    header = [_cell(name) for name in relation.columns]
    right = [type_.id in _NUMBERS for type_ in relation.types]
    widths = [max([_width(header[i])] + [_width(row[i]) for row in shown]) for i in range(len(header))]

    def line(cells: list[str], align: list[bool]) -> str:
        return " " + " | ".join(_pad(cell, width, flush_right) for cell, width, flush_right in zip(cells, widths, align)).rstrip()

    out.write(line(header, [False] * len(header)) + "\n")
    out.write("-" + "-+-".join("-" * width for width in widths) + "-\n")
    for row in shown:
        out.write(line(row, right) + "\n")
    if total <= TABLE_ROWS:
        out.write(f"({total} row{'s' if total != 1 else ''})\n")
    else:
        out.write(f"({total:,} rows; {total - TABLE_ROWS:,} not shown: --format csv or --format json prints them all)\n")


def _cell(value: str | None) -> str:
    """One line of at most CELL_WIDTH display columns."""
    if value is None:
        return "NULL"
    text = value.translate(_VISIBLE_CONTROLS)
    if _width(text) <= CELL_WIDTH:
        return text
    kept, width = [], 0
    for char in text:
        width += _width(char)
        if width > CELL_WIDTH - 1:
            break
        kept.append(char)
    return "".join(kept) + "…"


def _width(text: str) -> int:
    """Terminal columns: Chinese and other wide characters take two, combining marks none."""
    return sum(0 if unicodedata.combining(char) else 2 if unicodedata.east_asian_width(char) in "WF" else 1
               for char in text)


def _pad(text: str, width: int, flush_right: bool) -> str:
    fill = " " * (width - _width(text))
    return fill + text if flush_right else text + fill
