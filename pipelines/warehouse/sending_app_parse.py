"""Parsing the sending application's files: bytes of a file in, typed rows with their record keys
and the rejected records with their reasons out, a block at a time.

This runs in the parser process (sending_app_reader.py), never in the process that holds the
warehouse: the files are the user's, and a corrupt one can make a native parser abort. Nothing
here touches DuckDB.

A read covers a byte range of a file: from where the last read ended (when the part before it is
unchanged, as its fingerprint shows) or from the start, to the size the file had when the run
looked at it. Records are numbered from 0 in file order across reads. Text files are cut into
blocks of whole records; a last line without a line end may still be being written, so it is
left for the next read unless the file has settled (nobody wrote to it for a while).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import os
import re
from collections.abc import Callable, Iterator
from typing import IO, Any, Literal

import orjson
import polars as pl

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
RAW_COLUMNS = {kind: [column for column, _ in fields.values()] for kind, fields in FIELDS.items()}

# The key of a record in its raw table: a send with a SerialNo is its SerialNo and number, a
# failed send without one (SerialNo empty) its whole content, a conversion its SerialNo and time.
KEY_COLUMNS = {"sends": ["serial_no", "phone_number"], "conversions": ["serial_no", "conversion_time"]}

# Columns a CSV header or Parquet schema must have: without them no row of the file can be keyed.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "sends": ("SerialNo", "Code", "SendTime"),
    "conversions": ("SerialNo", "ConversionTime"),
}

FORMATS = {".ndjson": "ndjson", ".jsonl": "ndjson", ".json": "ndjson", ".csv": "csv", ".parquet": "parquet"}
_ROTATION_SUFFIX = re.compile(r"\.\d+$")  # sends.ndjson.1: a rotated copy keeps its format

BOM = b"\xef\xbb\xbf"
FINGERPRINT_BYTES = 64 << 10
# A record longer than this (no line end within it) is rejected whole, so a file without line
# ends cannot make the parser hold all of it.
MAX_RECORD_BYTES = 64 << 20
# A CSV line end after an odd number of quotes may be inside a quoted value; one that far from
# any other line end is taken as a record end all the same (a stray quote must not hold a file).
MAX_QUOTED_BYTES = 1 << 20

# Floats parsed from text are exact integers only below 2**53; a larger one is a rounded guess.
_EXACT_FLOAT = 2.0**53
_INT64_LIMIT = 2.0**63
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


class UnreadableFile(Exception):
    """A file that yields no records at all; the message says why, for a person to act on."""


@dataclasses.dataclass
class ReadRequest:
    """What to read of one file. `start` and `records_before` say where the last read ended and
    how many records came before it, `fingerprint` what the bytes before it looked like; `end`
    is the size the file had when the run looked at it (later bytes wait for the next run)."""

    kind: Kind
    path: str
    file_format: str
    end: int
    settled: bool
    block_bytes: int
    chunk_rows: int
    start: int = 0
    records_before: int = 0
    fingerprint: str | None = None


@dataclasses.dataclass
class ReadStart:
    """Where the read begins: where the last one ended, or 0 when the part before it changed."""

    start: int
    records_before: int


@dataclasses.dataclass
class ReadEnd:
    """Where the read ended: the position after its last record, the number the next record
    gets, and the fingerprint of the bytes before that position (None for Parquet)."""

    consumed: int
    next_record: int
    fingerprint: str | None


@dataclasses.dataclass
class Chunk:
    """The records of one block. `good`: typed raw columns and `source_row`; `bad`: (row,
    reason, payload).
    `consumed` is the file position after the block's last record (0 until a Parquet file is
    read to its end: it cannot be read on from the middle), `next_record` the number the next
    record gets, and `fingerprint` that of the bytes before `consumed`."""

    good: pl.DataFrame
    bad: list[tuple[int, str, str]]
    records: int
    consumed: int
    next_record: int
    fingerprint: str | None


@dataclasses.dataclass
class _Records:
    """Records of one block: a frame of the API-named fields (text, or Parquet's types) and
    `_row`, the record number; the records rejected before they had fields, as (row, reason,
    payload); the texts of records by their numbers, for the payloads of records rejected later;
    and, per text field, the records whose value is another JSON type (row -> type)."""

    frame: pl.DataFrame
    rejected: list[tuple[int, str, str]]
    payloads: Callable[[list[int]], list[str]]
    wrong_types: dict[str, dict[int, str]] = dataclasses.field(default_factory=dict)


def file_format(path: str) -> str:
    """The format that the file's extension names (a rotation number after it is skipped)."""
    extension = os.path.splitext(_ROTATION_SUFFIX.sub("", path))[1].lower()
    if extension not in FORMATS:
        raise UnreadableFile(f"unsupported file type {extension or '(none)'}: expected one of {', '.join(FORMATS)}")
    return FORMATS[extension]


def read_file(request: ReadRequest, handle: IO[bytes]) -> Iterator[ReadStart | Chunk | ReadEnd]:
    """A ReadStart, the chunks of the file's records from there on, and a ReadEnd."""
    start, records_before = _where_to_start(request, handle)
    yield ReadStart(start, records_before)
    if request.file_format == "parquet":
        yield from _parquet_chunks(request, handle)
        return
    # A byte-order mark is not part of the first record.
    bom = len(BOM) if request.end >= len(BOM) and _pread(handle, 0, len(BOM)) == BOM else 0
    next_record, consumed = records_before, start
    blocks: Iterator[tuple[bytes | _Oversized, int]] = iter(())
    if request.file_format == "ndjson":
        consumed = start or bom
        blocks = _text_blocks(request, handle, consumed, _last_line_end)
        parse: Callable[[bytes, int], _Records] = lambda block, base: _ndjson_records(request.kind, block, base)
    elif (header := _csv_header(request, handle, bom)) is not None:
        positions, width, header_end = header
        consumed = max(start, header_end)
        blocks = _text_blocks(request, handle, consumed, _last_csv_record_end)
        parse = lambda block, base: _csv_records(request.kind, block, base, positions, width)
    for block, consumed in blocks:
        if isinstance(block, _Oversized):
            records = _rejected_whole(request.kind, block, next_record)
        else:
            records = parse(block, next_record)
        chunk = _chunk(request.kind, records, next_record, consumed, _fingerprint(handle, consumed))
        next_record = chunk.next_record
        yield chunk
    yield ReadEnd(consumed, next_record, _fingerprint(handle, consumed))


def _fingerprint(handle: IO[bytes], position: int) -> str:
    """What the first `position` bytes looked like: their length, the first 64 KiB and the last
    64 KiB. An appended file keeps it; a file rewritten in place (copytruncate) does not."""
    digest = hashlib.blake2b(f"{position}:".encode(), digest_size=16)
    digest.update(_pread(handle, 0, min(position, FINGERPRINT_BYTES)))
    tail = max(0, position - FINGERPRINT_BYTES)
    digest.update(_pread(handle, tail, position - tail))
    return digest.hexdigest()


def _pread(handle: IO[bytes], position: int, size: int) -> bytes:
    handle.seek(position)
    return handle.read(size)


def _where_to_start(request: ReadRequest, handle: IO[bytes]) -> tuple[int, int]:
    if (request.start > 0 and request.fingerprint is not None and request.start <= request.end
            and _fingerprint(handle, request.start) == request.fingerprint):
        return request.start, request.records_before
    return 0, 0


def _chunk(kind: Kind, records: _Records, base: int, consumed: int, fingerprint: str | None) -> Chunk:
    good, rejected = _validate(kind, records.frame, records.wrong_types)
    rows, reasons = rejected.get_column("source_row").to_list(), rejected.get_column("_reason").to_list()
    bad = sorted(records.rejected + list(zip(rows, reasons, records.payloads(rows) if rows else [])))
    count = records.frame.height + len(records.rejected)
    return Chunk(good, bad, count, consumed, base + count, fingerprint)


# -- Text files: blocks of whole records ---------------------------------------------------------


@dataclasses.dataclass
class _Oversized:
    """A record longer than MAX_RECORD_BYTES: its length and its first bytes."""

    size: int
    head: bytes


def _text_blocks(request: ReadRequest, handle: IO[bytes], start: int,
                 record_end: Callable[[bytes, bool], int]) -> Iterator[tuple[bytes | _Oversized, int]]:
    """(block, position after it): consecutive blocks of whole records from `start` to the
    request's end. `record_end(data, forced)` is where the last whole record of `data` ends (0
    if none; `forced`: any line end will do). The bytes after the last line end are a record
    only when the file has settled; otherwise they wait for the next read."""
    position, data = start, b""
    while True:
        wanted = min(request.block_bytes, request.end - position - len(data))
        more = _pread(handle, position + len(data), wanted) if wanted > 0 else b""
        data += more
        if not more:  # the end of what this read covers (or of the file, if it shrank meanwhile)
            cut = len(data) if request.settled else record_end(data, len(data) >= MAX_QUOTED_BYTES)
            if cut > 0:
                yield data[:cut], position + cut
            return
        cut = record_end(data, len(data) >= MAX_QUOTED_BYTES)
        if cut > 0:
            yield data[:cut], position + cut
            position, data = position + cut, data[cut:]
        elif len(data) >= MAX_RECORD_BYTES:
            skipped = _skip_to_line_end(handle, position + len(data), request.end)
            if skipped is None and not request.settled:
                return
            size = (skipped if skipped is not None else request.end) - position
            yield _Oversized(size, data[:200]), position + size
            position, data = position + size, b""


def _skip_to_line_end(handle: IO[bytes], position: int, end: int) -> int | None:
    """The position after the next line end at or after `position`, or None if there is none."""
    while position < end:
        piece = _pread(handle, position, min(1 << 20, end - position))
        if not piece:
            return None
        at = max(piece.find(b"\n"), -1)
        if at >= 0:
            return position + at + 1
        position += len(piece)
    return None


def _rejected_whole(kind: Kind, record: _Oversized, row: int) -> _Records:
    reason = f"a record of {record.size} bytes, longer than {MAX_RECORD_BYTES >> 20} MiB"
    payload = record.head.decode("utf-8", "replace") + "..."
    empty = pl.DataFrame(schema={**dict.fromkeys(FIELDS[kind], pl.String), "_row": pl.Int32})
    return _Records(empty, [(row, reason, payload)], lambda rows: [])


def _last_line_end(data: bytes, forced: bool) -> int:
    return data.rfind(b"\n") + 1


def _last_csv_record_end(data: bytes, forced: bool) -> int:
    """After the last line end outside a quoted value (an even number of quotes before it): a
    quoted value may hold line ends. When a quote was left open, any line end will do once
    `forced`: the record it spoils ends with the block instead of running on to the file's end."""
    quotes, end = data.count(b'"'), len(data)
    while end > 0:
        at = max(data.rfind(b"\n", 0, end), data.rfind(b"\r", 0, end))
        if at < 0:
            break
        quotes -= data.count(b'"', at + 1, end)
        if quotes % 2 == 0:
            return at + 1
        end = at
    return max(data.rfind(b"\n"), data.rfind(b"\r")) + 1 if forced else 0


# -- NDJSON --------------------------------------------------------------------------------------


def _ndjson_records(kind: Kind, block: bytes, base: int) -> _Records:
    """One JSON object per line; blank lines are not records. Polars reads the block at once,
    every field as text (so 12, "12" and 12.0 all reach the conversions as "12"). When it returns
    a row per line, the block needs nothing more; otherwise it is split into lines, without the
    blank ones, and read again, line by line only if that fails too."""
    fields = list(FIELDS[kind])
    rejected: list[tuple[int, str, str]] = []
    frame = _json_lines(fields, block, block.count(b"\n") + (not block.endswith(b"\n")))
    if frame is not None:
        frame = frame.with_columns(pl.int_range(base, base + frame.height, dtype=pl.Int32).alias("_row"))
        lines = block
    else:
        records = [line for line in block.split(b"\n") if line.strip()]
        lines = b"\n".join(records)
        frame = _json_lines(fields, lines, len(records))
        if frame is not None:
            frame = frame.with_columns(pl.int_range(base, base + frame.height, dtype=pl.Int32).alias("_row"))
        else:
            frame, rejected = _json_lines_one_by_one(fields, records, base)
    return _Records(frame, rejected, lambda rows: _line_texts(lines.split(b"\n"), rows, base),
                    _json_wrong_types(kind, lines, base))


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


def _suspect_pattern(kind: Kind) -> str:
    """Where a line may hold a text field of another JSON type: the field's name followed by a
    value that is neither a string nor null, or any name written with a \\u escape (which polars
    would match to a field). Only the lines it finds are parsed again, to look."""
    names = "|".join(field for field, (_, dtype) in FIELDS[kind].items() if dtype == TEXT)
    return f'"(?:{names})"[ \\t\\r]*:[ \\t\\r]*[^"n \\t\\r]|"[^"\\n]*\\\\u[^"\\n]*"[ \\t\\r]*:'


_SUSPECT = {kind: _suspect_pattern(kind) for kind in FIELDS}
_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", list: "an array", dict: "an object"}


def _json_wrong_types(kind: Kind, lines: bytes, base: int) -> dict[str, dict[int, str]]:
    """Per text field, the records (by number) whose value is another JSON type. The block is
    searched at once with polars' regular expressions (the usual answer is: nowhere)."""
    try:
        text = pl.Series([lines], dtype=pl.Binary).cast(pl.String)
    except pl.exceptions.PolarsError:  # bytes that are not UTF-8 (their lines are rejected as such)
        text = pl.Series([lines.decode("utf-8", "replace")])
    if not text.str.contains(_SUSPECT[kind]).item():
        return {}
    suspects = text.str.split("\n").explode().str.contains(_SUSPECT[kind]).arg_true().to_list()
    split = lines.split(b"\n")
    wrong: dict[str, dict[int, str]] = {}
    for line in suspects:
        try:
            value = orjson.loads(split[line])
        except orjson.JSONDecodeError:
            continue  # rejected as not JSON already
        if type(value) is not dict:
            continue
        for field, (_, dtype) in FIELDS[kind].items():
            given = value.get(field)
            if dtype == TEXT and given is not None and type(given) is not str:
                wrong.setdefault(field, {})[base + line] = _JSON_TYPES.get(type(given), type(given).__name__)
    return wrong


def _line_texts(lines: list[bytes], rows: list[int], base: int) -> list[str]:
    return [_line_text(lines[row - base]) for row in rows]


def _line_text(line: bytes) -> str:
    return line.rstrip(b"\r\n").decode("utf-8", "replace")


# -- CSV -----------------------------------------------------------------------------------------


def _csv_header(request: ReadRequest, handle: IO[bytes], start: int) -> tuple[dict[str, int], int, int] | None:
    """Where each known field is, the header's width and where it ends; None when the file has
    no complete header row yet. The header is read from the file's start on every read, appended
    or whole (the fingerprint has shown that the start is unchanged)."""
    size = FINGERPRINT_BYTES
    while True:
        data = _pread(handle, start, min(size, request.end - start))
        first = _first_csv_record_end(data)
        if first or len(data) < size or size >= MAX_RECORD_BYTES:
            break
        size *= 4
    if first == 0:
        if not (request.settled and data.strip()):
            return None
        first = len(data)
    try:
        text = data[:first].decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile("the header row is not UTF-8") from None
    try:
        header = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise UnreadableFile(f"the header row is not CSV: {exc}") from None
    names = [name.strip() for name in header]
    for field in FIELDS[request.kind]:
        if names.count(field) > 1:
            raise UnreadableFile(f"the header names {field} {names.count(field)} times")
    _require_columns(request.kind, names, "the header")
    return {field: names.index(field) for field in FIELDS[request.kind] if field in names}, len(names), start + first


def _first_csv_record_end(data: bytes) -> int:
    """After the first line end outside a quoted value; 0 if there is none."""
    quotes, position = 0, 0
    while True:
        at = min((i for i in (data.find(b"\n", position), data.find(b"\r", position)) if i >= 0), default=-1)
        if at < 0:
            return 0
        quotes += data.count(b'"', position, at)
        if quotes % 2 == 0:
            return at + 2 if data[at:at + 2] == b"\r\n" else at + 1
        position = at + 1


def _csv_records(kind: Kind, block: bytes, base: int, positions: dict[str, int], width: int) -> _Records:
    """Records of exactly as many fields as the header; blank lines are not records.

    Polars parses the block when it is regular. It pads a short record with empty fields instead
    of failing, so regularity is proven by counting: every comma in the block is either a field
    separator, (width - 1) per record, or inside a quoted value. Any other block (or one with a
    carriage return that does not end a line, which polars would not take as a line end) is read
    record by record with the csv module, so a ragged or undecodable record spoils only itself.
    """
    data = block.rstrip(b"\r\n")
    table = _regular_csv(data, width) if data.count(b"\r") == data.count(b"\r\n") else None
    if table is None:
        return _csv_module_records(kind, block, base, positions, width)
    columns = [
        table.get_column(table.columns[positions[field]]).alias(field) if field in positions
        else pl.lit(None, dtype=pl.String).alias(field)
        for field in FIELDS[kind]
    ]
    frame = table.select(*columns, pl.int_range(base, base + table.height, dtype=pl.Int32).alias("_row"))
    return _Records(frame, [], lambda rows: [_csv_text(list(table.row(row - base))) for row in rows])


def _regular_csv(data: bytes, width: int) -> pl.DataFrame | None:
    """Every record as text, or None unless all have the header's width."""
    if not data:
        return pl.DataFrame(schema={f"column_{i + 1}": pl.String for i in range(width)})
    try:
        table = pl.read_csv(data, has_header=False, infer_schema=False, empty_string_is_null=False, raise_if_empty=False)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException):
        return None
    if table.width != width:
        return None
    quoted = sum(table.get_column(name).str.count_matches(",", literal=True).fill_null(0).sum() for name in table.columns)
    return table if data.count(b",") == (table.width - 1) * table.height + quoted else None


def _csv_module_records(kind: Kind, block: bytes, base: int, positions: dict[str, int], width: int) -> _Records:
    """The csv module's reading of an irregular block."""
    try:
        text = block.decode("utf-8")
        undecodable = False
    except UnicodeDecodeError:
        text = block.decode("utf-8", "surrogateescape")
        undecodable = True
    reader = csv.reader(io.StringIO(text, newline=""))
    records: list[list[str] | str] = []
    while True:
        try:
            record = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # the record takes its place as its error; reading goes on
            records.append(str(exc))
            continue
        if record:
            records.append(record)
    kept: list[list[str]] = []
    rows: list[int] = []
    rejected: list[tuple[int, str, str]] = []
    for offset, record in enumerate(records):
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
    return _Records(frame, rejected, lambda numbers: [_csv_text(records[n - base]) for n in numbers])


def _csv_text(record: list[str] | str) -> str:
    if isinstance(record, str):
        return ""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(record)
    return out.getvalue().encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# -- Parquet -------------------------------------------------------------------------------------


def _parquet_chunks(request: ReadRequest, handle: IO[bytes]) -> Iterator[Chunk]:
    """Typed columns, converted by the same rules as text; only the known columns are read, a
    slice of rows at a time. A Parquet file cannot be read on from the middle, so `consumed`
    stays 0 until its last slice."""
    kind = request.kind
    try:
        handle.seek(0)
        schema = pl.read_parquet_schema(handle)
        _require_columns(kind, list(schema), "the schema")
        handle.seek(0)
        scan = pl.scan_parquet(handle).select([name for name in schema if name in FIELDS[kind]])
        total = scan.select(pl.len()).collect().item()
    except UnreadableFile:
        raise
    except (Exception, pl.exceptions.PanicException) as exc:  # a corrupt file fails in many ways
        raise UnreadableFile(f"not a readable Parquet file: {_first_line(exc)}") from None
    for offset in range(0, max(total, 1), request.chunk_rows):
        try:
            table = scan.slice(offset, request.chunk_rows).collect()
        except (Exception, pl.exceptions.PanicException) as exc:
            raise UnreadableFile(f"not a readable Parquet file: {_first_line(exc)}") from None
        frame = table.with_columns(
            *[pl.lit(None, dtype=pl.String).alias(field) for field in FIELDS[kind] if field not in schema],
            pl.int_range(offset, offset + table.height, dtype=pl.Int32).alias("_row"),
        )
        records = _Records(frame, [], lambda rows, table=table, offset=offset: [
            orjson.dumps(table.row(row - offset, named=True), default=str).decode() for row in rows])
        last = offset + request.chunk_rows >= total
        yield _chunk(kind, records, offset, request.end if last else 0, None)
    yield ReadEnd(request.end, total, None)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _require_columns(kind: Kind, names: list[str], where: str) -> None:
    missing = [field for field in REQUIRED_COLUMNS[kind] if field not in names]
    if missing:
        raise UnreadableFile(f"{where} has no {', '.join(missing)} column (it has: {', '.join(names) or 'nothing'})")


# -- Validation ----------------------------------------------------------------------------------


def _validate(kind: Kind, frame: pl.DataFrame, wrong_types: dict[str, dict[int, str]] | None = None
             ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Typed raw rows (`source_row` and the raw column names) and the rejected (row, reason).

    A row is rejected for the first of: a value that cannot be converted, in field order (a text
    field of another type, a whole-number field that holds no whole number or a negative one);
    then a missing key. A send needs SendTime, and a SerialNo unless its Code reports a failure (a
    failed submission has no SerialNo, and is kept); a conversion needs SerialNo and
    ConversionTime. `wrong_types` names, per text field, the records whose JSON value was of
    another type (polars hands those over as their JSON text).
    """
    rows = frame.get_column("_row")
    columns = [rows.alias("source_row")]
    reasons: list[pl.Series] = []
    for field, (column, dtype) in FIELDS[kind].items():
        if dtype == TEXT:
            value, reason = _as_text(frame.get_column(field), field, rows, (wrong_types or {}).get(field))
        else:
            value, reason = _as_whole(frame.get_column(field), field)
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


def _is_text(dtype: Any) -> bool:
    return dtype in (pl.String, pl.Categorical, pl.Null) or isinstance(dtype, pl.Enum)


def _as_text(series: pl.Series, field: str, rows: pl.Series, wrong_types: dict[int, str] | None
             ) -> tuple[pl.Series, pl.Series | None]:
    """Text as it is. A value of another type is not guessed at: a number where a SerialNo
    belongs is not a SerialNo, and an array is not a phone number."""
    if not _is_text(series.dtype):
        reason = _where(series.is_not_null(), f"{field} is {series.dtype}, not text")
        return pl.Series([None] * len(series), dtype=pl.String), reason
    text = series.cast(pl.String)
    if not wrong_types:
        return text, None
    given = rows.replace_strict(wrong_types, default=None, return_dtype=pl.String)
    reason = pl.DataFrame({"type": given}).select(pl.format(f"{field} is {{}}, not text", "type")).to_series()
    return text, reason


def _as_whole(series: pl.Series, field: str) -> tuple[pl.Series, pl.Series | None]:
    """Whole numbers from integers, from floats without a fraction, and from text of either
    ("1620734188", " 1620734188.0"; empty text is null); anything else, and a negative number
    (no fee, send time or conversion time is), is a reason naming the value. The float reading
    of text is only tried where the integer reading failed."""
    dtype = series.dtype
    if dtype == pl.Null:
        return series.cast(pl.Int64), None
    if dtype.is_integer():
        given, whole = series, series.cast(pl.Int64, strict=False)
    elif dtype.is_float():
        given, whole = series, _whole_floats(series, _INT64_LIMIT)
    elif dtype in (pl.String, pl.Categorical) or isinstance(dtype, pl.Enum) or dtype.is_decimal():
        given = series.cast(pl.String).str.strip_chars().replace("", None)
        whole = given.cast(pl.Int64, strict=False)
        if (given.is_not_null() & whole.is_null()).any():
            whole = whole.fill_null(_whole_floats(given.cast(pl.Float64, strict=False), _EXACT_FLOAT))
    else:
        return pl.Series([None] * len(series), dtype=pl.Int64), _where(series.is_not_null(), f"{field} is {dtype}, not a whole number")
    failed = given.is_not_null() & whole.is_null()
    negative = whole.fill_null(0) < 0
    if not (failed.any() or negative.any()):
        return whole, None
    shown = given.cast(pl.String).str.slice(0, 40)
    reason = pl.DataFrame({"failed": failed, "negative": negative, "shown": shown}).select(
        pl.when("failed").then(pl.format(f"{field} '{{}}' is not a whole number", "shown"))
        .when("negative").then(pl.format(f"{field} '{{}}' is negative", "shown"))
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
