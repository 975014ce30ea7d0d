"""The sending application's SendSms log and conversion events into raw.sends and raw.conversions.

The application writes these files, not us, so nothing about them is trusted: a malformed record
is quarantined with its reason and the rest of the file still loads, and a file that cannot be
read at all is reported and skipped while the other files load. Nothing is dropped silently.

A file is the unit of loading. Logs grow by appending, so a file whose size or mtime changed is
reloaded whole: its earlier rows and quarantine entries are replaced in the same transaction that
inserts the new ones, which makes reloading exact and loading twice a no-op. An unchanged file
(same size and mtime_ns as recorded in raw.source_files) is not read again.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import glob
import io
import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any, Literal

import duckdb
import orjson
import polars as pl

from pipelines.warehouse import lake
from pipelines.warehouse.db import insert_frame, transaction, upsert_frame

Kind = Literal["sends", "conversions"]

TEXT = pl.String
WHOLE = pl.Int64

# API field -> (raw column, type), in the order of the raw tables.
FIELDS: dict[str, dict[str, tuple[str, Any]]] = {
    "sends": {
        "SerialNo": ("serial_no", TEXT),
        "PhoneNumber": ("phone_number", TEXT),
        "Fee": ("fee", WHOLE),
        "SessionContext": ("session_context", TEXT),
        "Code": ("code", TEXT),
        "Message": ("message", TEXT),
        "IsoCode": ("iso_code", TEXT),
        "SendTime": ("send_time", WHOLE),
        "SmsSdkAppId": ("sms_sdk_app_id", TEXT),
        "TemplateId": ("template_id", TEXT),
        "SignName": ("sign_name", TEXT),
    },
    "conversions": {
        "SerialNo": ("serial_no", TEXT),
        "ConversionTime": ("conversion_time", WHOLE),
    },
}

# Columns a CSV header or Parquet schema must have: without them no row of the file can be keyed.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "sends": ("SerialNo", "Code", "SendTime"),
    "conversions": ("SerialNo", "ConversionTime"),
}

TABLES = {"sends": "raw.sends", "conversions": "raw.conversions"}

FORMATS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv", ".parquet": "parquet"}

CHUNK_ROWS = 100_000
NDJSON_BLOCK_BYTES = 32 << 20  # whole lines are added to reach a line end

# Floats parsed from text are exact integers only below 2**53; a larger one is a rounded guess.
_EXACT_FLOAT = 2.0**53
_INT64_LIMIT = 2.0**63
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


@dataclasses.dataclass
class SourceReport:
    """What one call did: files matched, (re)loaded and skipped as unchanged; rows inserted and
    quarantined by this call; and one line per problem, for a person to act on."""

    kind: str
    files: int = 0
    loaded_files: int = 0
    unchanged_files: int = 0
    rows: int = 0
    quarantined: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


class UnreadableFile(Exception):
    """A file that yields no records at all; the message says why, for a person to act on."""


@dataclasses.dataclass
class _Chunk:
    """Records of one file: a frame of the API-named fields (text, or Parquet's types) and `_row`,
    the record number; the records rejected before they had fields, as (row, reason, payload);
    and the texts of records by their numbers, for the payloads of records rejected later."""

    frame: pl.DataFrame
    rejected: list[tuple[int, str, str]]
    payloads: Callable[[list[int]], list[str]]


@dataclasses.dataclass
class _ParsedFile:
    good: pl.DataFrame
    bad: list[tuple[int, str, str]]
    records: int


def load_source_files(con: duckdb.DuckDBPyConnection, kind: Kind, pattern: str | None) -> SourceReport:
    """Load every file matching `pattern` (a glob; `~` and recursive `**` work, relative paths
    are taken from the current directory) into the raw table of `kind`.

    The format follows the extension: .ndjson/.jsonl/.json (one object per line), .csv (a header
    row) or .parquet. Fields are matched by their API names; unknown fields and columns are
    ignored, a known one that is absent reads as null. Records are numbered from 0 in file order
    (`source_row`, and `record_index` in raw.quarantine); blank lines and the CSV header are not
    records.

    Problems are reported, never raised: an empty pattern gives an empty report (the pipeline
    runs without these files), a pattern without matches a problem line, and each bad file one
    line. Only files loaded this time report their quarantined rows; raw.quarantine keeps them.
    A file that disappeared keeps its rows: the warehouse holds what was sent even after the
    application rotates its logs away.
    """
    report = SourceReport(kind)
    if not pattern:
        return report
    paths = matching_files(pattern)
    report.files = len(paths)
    if not paths:
        report.problems.append(f"no file matches {pattern}")
        return report
    recorded = {
        row[0]: tuple(row[1:])
        for row in con.execute(
            "select source_file, kind, size_bytes, mtime_ns from raw.source_files where source_file in (select unnest($paths))",
            {"paths": paths},
        ).fetchall()
    }
    for path in paths:
        _load_file(con, kind, path, recorded.get(path), report)
    return report


def matching_files(pattern: str) -> list[str]:
    """Absolute paths of the regular files `pattern` matches, sorted so loads are repeatable."""
    absolute = os.path.abspath(os.path.expanduser(pattern))
    return sorted(p for p in glob.glob(absolute, recursive=True) if os.path.isfile(p))


def _load_file(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, recorded: tuple | None, report: SourceReport) -> None:
    """Reload one file if it changed. It is read before the transaction starts, so the warehouse
    is held only for the writes; its size and mtime are taken before reading, so bytes appended
    meanwhile make the next run reload it rather than be missed."""
    try:
        before = os.stat(path)
        if recorded == (kind, before.st_size, before.st_mtime_ns):
            report.unchanged_files += 1
            return
        with open(path, "rb") as handle:
            stat = os.fstat(handle.fileno())
            parsed = parse_file(kind, path, handle)
    except (OSError, UnreadableFile) as exc:
        cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        _record_unreadable(con, kind, path, cause)
        report.quarantined += 1
        report.problems.append(f"{path}: cannot be read, nothing loaded from it ({cause})")
        return
    _replace_file_rows(con, kind, path, stat, parsed)
    report.loaded_files += 1
    report.rows += parsed.good.height
    report.quarantined += len(parsed.bad)
    if parsed.bad:
        row, reason, _ = parsed.bad[0]
        report.problems.append(
            f"{path}: malformed rows quarantined, the others loaded "
            f"({len(parsed.bad)} bad rows of {parsed.records}; first at row {row}: {reason})"
        )


@lake.retry_conflicts
def _record_unreadable(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, cause: str) -> None:
    """Put the failure in raw.quarantine, replacing an earlier one for the file. Rows loaded
    from an earlier readable version stay, and raw.source_files still describes that version,
    so the file is tried again on every run until it reads."""
    with transaction(con):
        con.execute("delete from raw.quarantine where source = ? and batch_id = ? and record_index = -1", [kind, path])
        con.execute(
            "insert into raw.quarantine (source, reason, payload, batch_id, record_index) values (?, ?, null, ?, -1)",
            [kind, f"file cannot be read: {cause}", path],
        )


@lake.retry_conflicts
def _replace_file_rows(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, stat: os.stat_result, parsed: _ParsedFile) -> None:
    table = TABLES[kind]
    columns = [column for column, _ in FIELDS[kind].values()]
    bad = pl.DataFrame(
        parsed.bad, schema={"record_index": pl.Int32, "reason": pl.String, "payload": pl.String}, orient="row"
    ).with_columns(source=pl.lit(kind), batch_id=pl.lit(path))
    with transaction(con):
        con.execute(f"delete from {table} where source_file = ?", [path])
        con.execute("delete from raw.quarantine where source = ? and batch_id = ?", [kind, path])
        insert_frame(con, table, parsed.good.select(*columns, "source_row", source_file=pl.lit(path)))
        insert_frame(con, "raw.quarantine", bad)
        upsert_frame(con, "raw.source_files", pl.DataFrame(
            [(path, kind, stat.st_size, stat.st_mtime_ns, parsed.good.height, len(parsed.bad),
              dt.datetime.now(dt.UTC))],
            schema={"source_file": pl.String, "kind": pl.String, "size_bytes": pl.Int64, "mtime_ns": pl.Int64,
                    "rows": pl.Int32, "quarantined": pl.Int32, "loaded_at": pl.Datetime("us", "UTC")},
            orient="row"), key=["source_file"])


def parse_file(kind: Kind, path: str, handle: IO[bytes]) -> _ParsedFile:
    """Every record of one open file, split into typed good rows and quarantined ones."""
    extension = os.path.splitext(path)[1].lower()
    file_format = FORMATS.get(extension)
    if file_format is None:
        raise UnreadableFile(f"unsupported file type {extension or '(none)'}: expected one of {', '.join(FORMATS)}")
    chunks = {"ndjson": _ndjson_chunks, "csv": _csv_chunks, "parquet": _parquet_chunks}[file_format](kind, handle)
    goods: list[pl.DataFrame] = []
    bad: list[tuple[int, str, str]] = []
    records = 0
    for chunk in chunks:
        good, rejected = _validate(kind, chunk.frame)
        goods.append(good)
        rows, reasons = rejected.get_column("source_row").to_list(), rejected.get_column("_reason").to_list()
        bad.extend(sorted(chunk.rejected + list(zip(rows, reasons, chunk.payloads(rows) if rows else []))))
        records += chunk.frame.height + len(chunk.rejected)
    if not goods:
        goods.append(_validate(kind, pl.DataFrame(schema={**dict.fromkeys(FIELDS[kind], pl.String), "_row": pl.Int32}))[0])
    return _ParsedFile(pl.concat(goods), bad, records)


def _ndjson_chunks(kind: Kind, handle: IO[bytes]) -> Iterator[_Chunk]:
    """One JSON object per line; blank lines are not records. Polars reads a block of whole
    lines at once, every field as text (so 12, "12" and 12.0 all reach the conversions as "12").
    When it returns a row per line, the block needs nothing more; otherwise it is split into
    lines, without the blank ones, and read again, line by line only if that fails too."""
    fields = list(FIELDS[kind])
    base = 0
    while block := handle.read(NDJSON_BLOCK_BYTES) + handle.readline():
        frame = _json_lines(fields, block, block.count(b"\n") + (not block.endswith(b"\n")))
        if frame is not None:
            frame = frame.with_columns(pl.int_range(base, base + frame.height, dtype=pl.Int32).alias("_row"))
            yield _Chunk(frame, [], lambda rows, block=block, base=base: _line_texts(block.split(b"\n"), rows, base))
            base += frame.height
            continue
        records = [line for line in block.split(b"\n") if line.strip()]
        frame = _json_lines(fields, b"\n".join(records), len(records))
        if frame is not None:
            frame = frame.with_columns(pl.int_range(base, base + frame.height, dtype=pl.Int32).alias("_row"))
            rejected: list[tuple[int, str, str]] = []
        else:
            frame, rejected = _json_lines_one_by_one(fields, records, base)
        yield _Chunk(frame, rejected, lambda rows, records=records, base=base: _line_texts(records, rows, base))
        base += len(records)


def _json_lines(fields: list[str], data: bytes, lines: int) -> pl.DataFrame | None:
    """The fields of each of `lines` lines as text, or None unless each is one JSON object."""
    schema = dict.fromkeys(fields, pl.String)
    if not lines:
        return pl.DataFrame(schema=schema)
    try:
        frame = pl.read_ndjson(data, schema=schema)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        return None
    return frame if frame.height == lines else None


def _json_lines_one_by_one(fields: list[str], lines: list[bytes], base: int) -> tuple[pl.DataFrame, list[tuple[int, str, str]]]:
    """orjson finds the lines that are not JSON objects; polars then reads the others as usual.
    Lines polars still refuses (where the two parsers disagree) are read alone, and quarantined
    if that fails too."""
    rejected: list[tuple[int, str, str]] = []
    objects: list[int] = []
    for offset, line in enumerate(lines):
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            rejected.append((base + offset, f"not valid JSON: {exc.msg} at column {exc.colno}", _line_text(line)))
            continue
        if type(value) is dict:
            objects.append(offset)
        else:
            rejected.append((base + offset, "not a JSON object", _line_text(line)))
    frame = _json_lines(fields, b"\n".join(lines[offset] for offset in objects), len(objects))
    if frame is not None:
        return frame.with_columns(pl.Series("_row", [base + offset for offset in objects], dtype=pl.Int32)), rejected
    frames = [pl.DataFrame(schema={**dict.fromkeys(fields, pl.String), "_row": pl.Int32})]
    for offset in objects:
        single = _json_lines(fields, lines[offset], 1)
        if single is None:
            rejected.append((base + offset, "not readable as a JSON object", _line_text(lines[offset])))
        else:
            frames.append(single.with_columns(pl.lit(base + offset, dtype=pl.Int32).alias("_row")))
    return pl.concat(frames), rejected


def _line_texts(lines: list[bytes], rows: list[int], base: int) -> list[str]:
    return [_line_text(lines[row - base]) for row in rows]


def _line_text(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


def _csv_chunks(kind: Kind, handle: IO[bytes]) -> Iterator[_Chunk]:
    """A header row, then records of exactly as many fields; blank lines are not records.

    Polars parses the file when it is regular. It pads a short record with empty fields instead
    of failing, so regularity is proven by counting: every comma in the file is either a field
    separator, (width - 1) per record, or inside a quoted value. Any other file (or one with a
    carriage return that does not end a line, which polars would not take as a line end) is read
    record by record with the csv module, so a ragged or undecodable record spoils only itself.
    """
    data = handle.read()
    table = _regular_csv(data.rstrip(b"\r\n")) if data.count(b"\r") == data.count(b"\r\n") else None
    if table is None:
        yield from _csv_records(kind, data)
        return
    if table.height == 0:
        return
    positions = _csv_header(kind, list(table.row(0)))
    rows = table.slice(1)
    columns = [
        rows.get_column(rows.columns[positions[field]]).alias(field) if field in positions
        else pl.lit(None, dtype=pl.String).alias(field)
        for field in FIELDS[kind]
    ]
    frame = rows.select(*columns, pl.int_range(0, rows.height, dtype=pl.Int32).alias("_row"))
    yield _Chunk(frame, [], lambda numbers: [_csv_text(list(rows.row(number))) for number in numbers])


def _regular_csv(data: bytes) -> pl.DataFrame | None:
    """Every record (the header first) as text, or None unless all have the same width."""
    try:
        table = pl.read_csv(data, has_header=False, infer_schema=False, empty_string_is_null=False, raise_if_empty=False)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        return None
    quoted = sum(table.get_column(name).str.count_matches(",", literal=True).fill_null(0).sum() for name in table.columns)
    return table if data.count(b",") == (table.width - 1) * table.height + quoted else None


def _csv_header(kind: Kind, header: list[str]) -> dict[str, int]:
    """Where each known field is, or why the header cannot be used."""
    names = [name.strip() for name in header]
    for field in FIELDS[kind]:
        if names.count(field) > 1:
            raise UnreadableFile(f"the header names {field} {names.count(field)} times")
    _require_columns(kind, names, "the header")
    return {field: names.index(field) for field in FIELDS[kind] if field in names}


def _csv_records(kind: Kind, data: bytes) -> Iterator[_Chunk]:
    """The csv module's reading of an irregular file, in chunks of CHUNK_ROWS records."""
    try:
        text = data.decode("utf-8-sig")
        undecodable = False
    except UnicodeDecodeError:
        text = data.decode("utf-8-sig", "surrogateescape")
        undecodable = True
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise UnreadableFile(f"the header row is not CSV: {exc}") from None
    if header is None:
        return
    if undecodable and _NOT_UTF8.search("".join(header)):
        raise UnreadableFile("the header row is not UTF-8")
    positions = _csv_header(kind, header)
    width = len(header)
    base = 0
    while True:
        block = _csv_block(reader)
        if not block:
            return
        kept: list[list[str]] = []
        rows: list[int] = []
        rejected: list[tuple[int, str, str]] = []
        for offset, record in enumerate(block):
            if isinstance(record, str):
                rejected.append((base + offset, f"not CSV: {record}", ""))
            elif len(record) != width:
                rejected.append((base + offset, f"{len(record)} fields where the header has {width}", _csv_text(record)))
            elif undecodable and _NOT_UTF8.search("".join(record)):
                rejected.append((base + offset, "not valid UTF-8", _csv_text(record)))
            else:
                kept.append(record)
                rows.append(base + offset)
        columns = [
            pl.Series(field, [record[positions[field]] for record in kept], dtype=pl.String) if field in positions
            else pl.Series(field, [None] * len(kept), dtype=pl.String)
            for field in FIELDS[kind]
        ]
        frame = pl.DataFrame([*columns, pl.Series("_row", rows, dtype=pl.Int32)])
        yield _Chunk(frame, rejected, lambda numbers, block=block, start=base: [_csv_text(block[n - start]) for n in numbers])
        base += len(block)


def _csv_block(reader: Any) -> list[list[str] | str]:
    """Up to CHUNK_ROWS non-blank records. A record the csv module cannot parse takes its place
    as its error message, and reading goes on with the next line."""
    block: list[list[str] | str] = []
    while len(block) < CHUNK_ROWS:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            block.append(str(exc))
            continue
        if record:
            block.append(record)
    return block


def _csv_text(record: list[str] | str) -> str:
    if isinstance(record, str):
        return ""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(record)
    return out.getvalue().encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _parquet_chunks(kind: Kind, handle: IO[bytes]) -> Iterator[_Chunk]:
    """Typed columns, converted by the same rules as text; only the known columns are read."""
    data = io.BytesIO(handle.read())
    try:
        schema = pl.read_parquet_schema(data)
        _require_columns(kind, list(schema), "the schema")
        data.seek(0)
        table = pl.read_parquet(data, columns=[name for name in schema if name in FIELDS[kind]])
    except UnreadableFile:
        raise
    except (Exception, pl.exceptions.PanicException) as exc:  # a corrupt file fails in many ways
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UnreadableFile(f"not a readable Parquet file: {first_line}") from None
    frame = table.with_columns(
        *[pl.lit(None, dtype=pl.String).alias(field) for field in FIELDS[kind] if field not in schema],
        pl.int_range(0, table.height, dtype=pl.Int32).alias("_row"),
    )
    yield _Chunk(frame, [], lambda rows: [orjson.dumps(table.row(row, named=True), default=str).decode() for row in rows])


def _require_columns(kind: Kind, names: list[str], where: str) -> None:
    missing = [field for field in REQUIRED_COLUMNS[kind] if field not in names]
    if missing:
        raise UnreadableFile(f"{where} has no {', '.join(missing)} column (it has: {', '.join(names) or 'nothing'})")


def _validate(kind: Kind, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed raw rows (`source_row` and the raw column names) and the rejected (row, reason).

    A row is rejected for the first of: a value that cannot be converted, in field order; then a
    missing key. A send needs SendTime, and a SerialNo unless its Code reports a failure (a failed
    submission has no SerialNo, and is kept); a conversion needs SerialNo and ConversionTime.
    """
    columns = [frame.get_column("_row").alias("source_row")]
    reasons: list[pl.Series] = []
    for field, (column, dtype) in FIELDS[kind].items():
        value, reason = (_as_text if dtype == TEXT else _as_whole)(frame.get_column(field), field)
        columns.append(value.alias(column))
        if reason is not None:
            reasons.append(reason)
    typed = pl.DataFrame(columns)
    serial_missing = pl.col("serial_no").is_null() | (pl.col("serial_no").str.strip_chars() == "")
    if kind == "sends":
        code = pl.col("code").str.strip_chars()
        keys = [
            pl.when(pl.col("send_time").is_null()).then(pl.lit("missing SendTime")),
            pl.when(serial_missing & (code == "Ok")).then(pl.lit("missing SerialNo on a send with Code Ok")),
            pl.when(serial_missing & (code.is_null() | (code == ""))).then(pl.lit("missing SerialNo and Code")),
        ]
    else:
        keys = [
            pl.when(serial_missing).then(pl.lit("missing SerialNo")),
            pl.when(pl.col("conversion_time").is_null()).then(pl.lit("missing ConversionTime")),
        ]
    checked = typed.with_columns(pl.coalesce(*[pl.lit(reason) for reason in reasons], *keys).alias("_reason"))
    good = checked.filter(pl.col("_reason").is_null()).drop("_reason")
    rejected = checked.filter(pl.col("_reason").is_not_null()).select("source_row", "_reason")
    return good, rejected


def _is_texty(dtype: Any) -> bool:
    return dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum) or dtype.is_decimal()


def _as_text(series: pl.Series, field: str) -> tuple[pl.Series, pl.Series | None]:
    """Text as it is (NDJSON values of other JSON types arrive as their JSON text). A Parquet
    number is written in decimal, without the ".0" of a float that holds a whole number."""
    dtype = series.dtype
    if dtype == pl.Null or dtype == pl.Boolean or _is_texty(dtype) or dtype.is_integer():
        return series.cast(pl.String), None
    if dtype.is_float():
        whole = _whole_floats(series, _INT64_LIMIT)
        return whole.cast(pl.String).fill_null(series.cast(pl.String)), None
    return pl.Series([None] * len(series), dtype=pl.String), _where(series.is_not_null(), f"{field} is {dtype}, not text")


def _as_whole(series: pl.Series, field: str) -> tuple[pl.Series, pl.Series | None]:
    """Whole numbers from integers, from floats without a fraction, and from text of either
    ("1620734188", " 1620734188.0"; empty text is null); anything else is a reason naming the
    value. The float reading of text is only tried where the integer reading failed."""
    dtype = series.dtype
    if dtype == pl.Null:
        return series.cast(pl.Int64), None
    if dtype.is_integer():
        given, whole = series, series.cast(pl.Int64, strict=False)
    elif dtype.is_float():
        given, whole = series, _whole_floats(series, _INT64_LIMIT)
    elif _is_texty(dtype):
        given = series.cast(pl.String).str.strip_chars().replace("", None)
        whole = given.cast(pl.Int64, strict=False)
        if (given.is_not_null() & whole.is_null()).any():
            whole = whole.fill_null(_whole_floats(given.cast(pl.Float64, strict=False), _EXACT_FLOAT))
    else:
        return pl.Series([None] * len(series), dtype=pl.Int64), _where(series.is_not_null(), f"{field} is {dtype}, not a whole number")
    failed = given.is_not_null() & whole.is_null()
    if not failed.any():
        return whole, None
    shown = given.cast(pl.String).str.slice(0, 40)
    reason = pl.DataFrame({"failed": failed, "shown": shown}).select(
        pl.when("failed").then(pl.format(f"{field} '{{}}' is not a whole number", "shown"))
    )
    return whole, reason.to_series()


def _whole_floats(series: pl.Series, limit: float) -> pl.Series:
    """The floats that hold a whole number below `limit` in magnitude, as integers; else null."""
    exact = series.is_finite() & (series == series.round()) & (series.abs() < limit)
    return pl.DataFrame({"exact": exact, "value": series}).select(
        pl.when("exact").then(pl.col("value").cast(pl.Int64, strict=False))
    ).to_series()


def _where(mask: pl.Series, reason: str) -> pl.Series:
    return pl.DataFrame({"mask": mask}).select(pl.when("mask").then(pl.lit(reason))).to_series()
