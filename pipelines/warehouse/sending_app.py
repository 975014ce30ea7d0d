"""The sending application's SendSms log and conversion events into raw.sends and raw.conversions.

The application writes these files, not us, so nothing about them is trusted. They are parsed in
a child process (sending_app_reader.py), so even a file that crashes the parser costs only
itself; a malformed record is quarantined with its reason and the rest of the file loads; a file
that cannot be read is reported, with a quarantine row, while the other files load.

Loading is insert-only. Every record has a key (sending_app_parse.record_key), and a record whose
key the table holds is not inserted again, whichever file it came from: reading a file again, a
rotated copy of it, or a rewritten version of it never duplicates a row, and no read deletes
one. raw.source_files remembers how far each file was read (`read_bytes`, `records`) and a
fingerprint of that part: a file that only grew is read from there on; a file whose read part
changed (rewritten in place, edited) is read whole, and only its new records are inserted. An
unchanged file (same size and mtime_ns, read to its end) is not opened.

Each chunk of a file (one block of records) is inserted in its own transaction, with the file's
progress: a run killed half-way goes on from the last chunk, without loss or duplicates.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time

import duckdb
import polars as pl

from pipelines.warehouse.db import registered, transaction
from pipelines.warehouse.sending_app_parse import (
    RAW_COLUMNS, Chunk, Kind, ReadEnd, ReadRequest, ReadStart, UnreadableFile, file_format, record_key,
)
from pipelines.warehouse.sending_app_reader import ParserDied, ParserProcess

TABLES = {"sends": "raw.sends", "conversions": "raw.conversions"}

BLOCK_BYTES = 32 << 20  # of a text file, parsed and inserted at once (whole records are added to reach a line end)
CHUNK_ROWS = 100_000  # of a Parquet file, likewise
# A file written to within this many seconds may end in a line still being written: that line
# waits for its line end, or for the file to be left alone this long.
SETTLE_SECONDS = 5.0
# The longest the parser may take to answer (to start, or to parse one block) before it is
# stopped and the file reported.
READ_TIMEOUT_SECONDS = 300.0


@dataclasses.dataclass
class SourceReport:
    """What one call did: files matched, read (whole or from where the last read ended) and
    skipped as unchanged; records read, of which new rows inserted, records already loaded
    (`duplicates`) and quarantine rows added; and one line per problem, for a person to act on."""

    kind: str
    files: int = 0
    loaded_files: int = 0
    unchanged_files: int = 0
    records: int = 0
    rows: int = 0
    duplicates: int = 0
    quarantined: int = 0
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Recorded:
    """raw.source_files' row of a file: what it looked like and how far it was read."""

    kind: str
    size_bytes: int
    mtime_ns: int
    read_bytes: int | None
    records: int | None
    fingerprint: str | None


@dataclasses.dataclass
class _FileRead:
    """One file's read in this call."""

    path: str
    stat: os.stat_result
    records: int = 0
    bad: int = 0
    first_bad: tuple[int, str] | None = None
    loaded_through: int = 0  # records before the last chunk inserted end


def load_source_files(con: duckdb.DuckDBPyConnection, kind: Kind, pattern: str | None) -> SourceReport:
    """Load every file matching `pattern` (a glob; `~` and recursive `**` work, relative paths
    are taken from the current directory) into the raw table of `kind`.

    The format follows the extension (after a rotation number such as .1): .ndjson/.jsonl/.json
    (one object per line), .csv (a header row) or .parquet. Fields are matched by their API names;
    unknown fields and columns are ignored, a known one that is absent reads as null. Records are
    numbered from 0 in file order (`source_row`, and `record_index` in raw.quarantine); blank
    lines and the CSV header are not records.

    Problems are reported, never raised: an empty pattern gives an empty report (the pipeline
    runs without these files), a pattern without matches a problem line, and each bad file one
    line. A file that disappeared keeps its rows: the warehouse holds what was sent even after
    the application rotates its logs away.
    """
    report = SourceReport(kind)
    if not pattern:
        return report
    paths = matching_files(pattern)
    report.files = len(paths)
    if not paths:
        report.problems.append(f"no file matches {pattern}")
        return report
    _key_rows_loaded_before_keys(con, kind)
    recorded = {
        row[0]: _Recorded(*row[1:])
        for row in con.execute(
            "select source_file, kind, size_bytes, mtime_ns, read_bytes, records, fingerprint from raw.source_files "
            "where source_file in (select unnest($paths))",
            {"paths": paths},
        ).fetchall()
    }
    with ParserProcess(READ_TIMEOUT_SECONDS) as parser:
        for path in paths:
            _load_file(con, kind, path, recorded.get(path), parser, report)
    return report


def matching_files(pattern: str) -> list[str]:
    """Absolute paths of the regular files `pattern` matches, sorted so loads are repeatable."""
    absolute = os.path.abspath(os.path.expanduser(pattern))
    return sorted(p for p in glob.glob(absolute, recursive=True) if os.path.isfile(p))


def _load_file(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, recorded: _Recorded | None,
               parser: ParserProcess, report: SourceReport) -> None:
    """Read what is new in one file and insert its new records. The size and mtime are taken
    before reading, and the read stops at that size, so bytes appended meanwhile are read by the
    next run rather than missed."""
    try:
        stat = os.stat(path)
        request = _request(kind, path, stat, recorded)
    except (OSError, UnreadableFile) as exc:
        _report_unreadable(con, kind, path, exc, None, report)
        return
    if request is None:
        report.unchanged_files += 1
        return
    read = _FileRead(path, stat)
    try:
        for event in parser.read(request):
            if isinstance(event, ReadStart):
                read.loaded_through = event.records_before
            elif isinstance(event, Chunk):
                new_rows, new_bad = _insert_chunk(con, kind, path, stat, event)
                _count(read, report, event, new_rows, new_bad)
            else:
                _finish(con, kind, path, stat, event)
    except (UnreadableFile, ParserDied) as exc:
        _report_unreadable(con, kind, path, exc, read, report)
        return
    report.loaded_files += 1
    if read.first_bad is not None:
        row, reason = read.first_bad
        report.problems.append(
            f"{path}: malformed rows quarantined, the others loaded "
            f"({read.bad} bad rows of {read.records}; first at row {row}: {reason})"
        )


def _request(kind: Kind, path: str, stat: os.stat_result, recorded: _Recorded | None) -> ReadRequest | None:
    """What to read of the file, or None when it is unchanged since it was read to its end."""
    parsed_as = file_format(path)
    read_before = recorded is not None and recorded.kind == kind and recorded.read_bytes is not None
    if read_before and (recorded.size_bytes, recorded.mtime_ns, recorded.read_bytes) == (
            stat.st_size, stat.st_mtime_ns, stat.st_size):
        return None
    request = ReadRequest(
        kind=kind, path=path, file_format=parsed_as, end=stat.st_size,
        settled=time.time() - stat.st_mtime_ns / 1e9 >= SETTLE_SECONDS, block_bytes=BLOCK_BYTES, chunk_rows=CHUNK_ROWS,
    )
    if read_before and parsed_as != "parquet" and recorded.fingerprint is not None:
        request.start, request.records_before, request.fingerprint = recorded.read_bytes, recorded.records, recorded.fingerprint
    return request


def _insert_chunk(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, stat: os.stat_result,
                  chunk: Chunk) -> tuple[int, int]:
    """Insert the chunk's records whose key the table does not hold yet, its rejected records
    not quarantined before, and the file's progress, in one transaction; returns how many rows
    and quarantine rows were new."""
    table = TABLES[kind]
    incoming = chunk.good.with_columns(source_file=pl.lit(path))
    names = ", ".join(incoming.columns)
    bad = pl.DataFrame(
        chunk.bad, schema={"record_index": pl.Int32, "reason": pl.String, "payload": pl.String}, orient="row"
    ).with_columns(source=pl.lit(kind), batch_id=pl.lit(path))
    with transaction(con):
        new_rows = 0
        if incoming.height:
            with registered(con, "_incoming", incoming):
                new_rows = con.execute(
                    f"insert into {table} ({names}) select {names} from _incoming anti join {table} t using (record_key) "
                    "order by source_row"
                ).fetchone()[0]
        new_bad = _quarantine_new(con, bad) if bad.height else 0
        _record_progress(con, kind, path, stat, chunk.consumed, chunk.next_record, chunk.fingerprint, new_rows, new_bad)
    return new_rows, new_bad


def _quarantine_new(con: duckdb.DuckDBPyConnection, bad: pl.DataFrame) -> int:
    """Rejected records not quarantined before: the same text at the same record number of the
    same file is the same rejected record, however often the file is read."""
    with registered(con, "_rejected", bad):
        return con.execute(
            "insert into raw.quarantine (source, reason, payload, batch_id, record_index) "
            "select r.source, r.reason, r.payload, r.batch_id, r.record_index from _rejected r "
            "anti join (select source, batch_id, record_index, payload from raw.quarantine "
            "           where batch_id = (select any_value(batch_id) from _rejected)) q "
            "on r.source = q.source and r.batch_id = q.batch_id and r.record_index = q.record_index "
            "and r.payload is not distinct from q.payload"
        ).fetchone()[0]


def _record_progress(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, stat: os.stat_result, consumed: int,
                     next_record: int, fingerprint: str | None, new_rows: int, new_bad: int) -> None:
    con.execute(
        "insert into raw.source_files (source_file, kind, size_bytes, mtime_ns, read_bytes, records, fingerprint, "
        "rows, quarantined) values (?, ?, ?, ?, ?, ?, ?, ?, ?) on conflict (source_file) do update set "
        "kind = excluded.kind, size_bytes = excluded.size_bytes, mtime_ns = excluded.mtime_ns, "
        "read_bytes = excluded.read_bytes, records = excluded.records, fingerprint = excluded.fingerprint, "
        "rows = raw.source_files.rows + excluded.rows, quarantined = raw.source_files.quarantined + excluded.quarantined, "
        "loaded_at = now()",
        [path, kind, stat.st_size, stat.st_mtime_ns, consumed, next_record, fingerprint, new_rows, new_bad],
    )


def _finish(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, stat: os.stat_result, end: ReadEnd) -> None:
    """The file read to where it could be: its progress, and no note that it cannot be read."""
    with transaction(con):
        con.execute("delete from raw.quarantine where source = ? and batch_id = ? and record_index = -1", [kind, path])
        _record_progress(con, kind, path, stat, end.consumed, end.next_record, end.fingerprint, 0, 0)


def _count(read: _FileRead, report: SourceReport, chunk: Chunk, new_rows: int, new_bad: int) -> None:
    read.records += chunk.records
    read.bad += len(chunk.bad)
    if read.first_bad is None and chunk.bad:
        read.first_bad = chunk.bad[0][:2]
    read.loaded_through = chunk.next_record
    report.records += chunk.records
    report.rows += new_rows
    report.duplicates += chunk.repeated + chunk.good.height - new_rows
    report.quarantined += new_bad


def _report_unreadable(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, exc: Exception, read: _FileRead | None,
                       report: SourceReport) -> None:
    """One problem line, and one quarantine row per file (replacing an earlier one). Rows loaded
    before stay, and raw.source_files still says how far the file was read, so it is tried again
    on every run from there until it reads."""
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    with transaction(con):
        con.execute("delete from raw.quarantine where source = ? and batch_id = ? and record_index = -1", [kind, path])
        con.execute(
            "insert into raw.quarantine (source, reason, payload, batch_id, record_index) values (?, ?, null, ?, -1)",
            [kind, f"file cannot be read: {cause}", path],
        )
    report.quarantined += 1
    if read is not None and read.loaded_through > 0:
        report.problems.append(f"{path}: cannot be read past record {read.loaded_through}, the records before it "
                               f"loaded ({cause})")
    else:
        report.problems.append(f"{path}: cannot be read, nothing loaded from it ({cause})")


def _key_rows_loaded_before_keys(con: duckdb.DuckDBPyConnection, kind: Kind) -> None:
    """Rows a warehouse loaded before record keys existed get theirs, so that reading their
    files again adds nothing (once; afterwards the query finds no row)."""
    table = TABLES[kind]
    columns = ", ".join(RAW_COLUMNS[kind])
    while True:
        rows = con.execute(f"select rowid as _rowid, {columns} from {table} where record_key is null limit {CHUNK_ROWS}").pl()
        if rows.is_empty():
            return
        keys = rows.select("_rowid", record_key=record_key(kind))
        with transaction(con), registered(con, "_keys", keys):
            con.execute(f"update {table} set record_key = _keys.record_key from _keys where {table}.rowid = _keys._rowid")
