"""The sending application's SendSms log and conversion events into raw.sends and raw.conversions.

The application writes these files, not us, so nothing about them is trusted. They are parsed in
a child process (sending_app_reader.py), so even a file that crashes the parser costs only
itself; a malformed record is quarantined with its reason and the rest of the file loads; a file
that cannot be read is reported, with a quarantine row, while the other files load.

Loading is insert-only. Every record has a key (sending_app_parse.KEY_COLUMNS: columns of its
own, so the key costs no storage), and a record whose key the table holds is not inserted again, whichever file it came from: reading a file again, a
rotated copy of it, or a rewritten version of it never duplicates a row, and no read deletes
one. raw.source_files remembers how far each file was read (`read_bytes`, `records`) and a
fingerprint of that part: a file that only grew is read from there on; a file whose read part
changed (rewritten in place, edited) is read whole, and only its new records are inserted. An
unchanged file (same size and mtime_ns, read to its end) is not opened.

Rows are inserted whole DuckDB row groups at a time, each insert in its own transaction with the
file's progress up to there: a run killed half-way goes on from the last insert, without loss
or duplicates.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import time

import duckdb
import polars as pl

from pipelines.warehouse import lake
from pipelines.warehouse.db import memory_limited, registered, transaction
from pipelines.warehouse.sending_app_parse import (
    KEY_COLUMNS, RAW_COLUMNS, Chunk, Kind, ReadEnd, ReadRequest, ReadStart, UnreadableFile, file_format,
)
from pipelines.warehouse.sending_app_reader import ParserDied, ParserProcess

TABLES = {"sends": "raw.sends", "conversions": "raw.conversions"}

BLOCK_BYTES = 16 << 20  # of a text file, parsed at once (whole records are added to reach a line end)
CHUNK_ROWS = 100_000  # of a Parquet file, likewise
ROW_GROUP_ROWS = 122_880  # DuckDB's
INSERT_ROWS = 2 * ROW_GROUP_ROWS  # rows wait for an insert until there are this many, or the read ends
# A file written to within this many seconds may end in a line still being written: that line
# waits for its line end, or for the file to be left alone this long.
SETTLE_SECONDS = 5.0
# DuckDB's memory while files load (its cache of the tables grew past 300 MiB with a 10M-row
# raw.sends, and a checkpoint after such a load took 200 MiB more).
DUCKDB_MEMORY_LIMIT = "256MB"
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
    with ParserProcess(READ_TIMEOUT_SECONDS) as parser, memory_limited(con, DUCKDB_MEMORY_LIMIT):
        _load_paths(con, kind, paths, parser, report)
    return report


def matching_files(pattern: str) -> list[str]:
    """Absolute paths of the regular files `pattern` matches, sorted so loads are repeatable."""
    absolute = os.path.abspath(os.path.expanduser(pattern))
    return sorted(p for p in glob.glob(absolute, recursive=True) if os.path.isfile(p))


def _load_paths(con: duckdb.DuckDBPyConnection, kind: Kind, paths: list[str], parser: ParserProcess,
                report: SourceReport) -> None:
    recorded = {
        row[0]: _Recorded(*row[1:])
        for row in con.execute(
            "select source_file, kind, size_bytes, mtime_ns, read_bytes, records, fingerprint from raw.source_files "
            "where source_file in (select unnest($paths))",
            {"paths": paths},
        ).fetchall()
    }
    for path in paths:
        _load_file(con, kind, path, recorded.get(path), parser, report)


def _load_file(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, recorded: _Recorded | None,
               parser: ParserProcess, report: SourceReport) -> None:
    """Read what is new in one file and insert its new records. The size and mtime are taken
    before reading, and the read stops at that size, so bytes appended meanwhile are read by the
    next run rather than missed."""
    try:
        stat = os.stat(path)
        request = _request(kind, path, stat, recorded)
    except (OSError, UnreadableFile) as exc:
        _report_unreadable(con, kind, path, exc, 0, report)
        return
    if request is None:
        report.unchanged_files += 1
        return
    load = _FileLoad(con, kind, path, stat, report)
    try:
        for event in parser.read(request):
            if isinstance(event, ReadStart):
                load.loaded_through = event.records_before
            elif isinstance(event, Chunk):
                load.add(event)
            else:
                load.finish(event)
    except (UnreadableFile, ParserDied) as exc:
        load.finish(None)  # the chunks that came are whole: they load
        _report_unreadable(con, kind, path, exc, load.loaded_through, report)
        return
    report.loaded_files += 1
    if load.first_bad is not None:
        row, reason = load.first_bad
        report.problems.append(
            f"{path}: malformed rows quarantined, the others loaded "
            f"({load.bad} bad rows of {load.records}; first at row {row}: {reason})"
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


class _FileLoad:
    """The chunks of one file's read on their way into the warehouse. Rows wait until whole
    DuckDB row groups can be inserted: an insert that ends in a part of a row group makes every
    later commit rewrite it, which doubled the cost of loading. Each insert is one transaction,
    with the rejected records and the progress of the chunks it completes."""

    def __init__(self, con: duckdb.DuckDBPyConnection, kind: Kind, path: str, stat: os.stat_result,
                 report: SourceReport):
        self.con, self.kind, self.path, self.stat, self.report = con, kind, path, stat, report
        self.pending: list[pl.DataFrame] = []
        self.waiting: list[tuple[Chunk, int]] = []  # chunks not wholly inserted, and the pending rows through each
        self.records = self.bad = 0
        self.first_bad: tuple[int, str] | None = None
        self.loaded_through = 0  # the records before the end of the last chunk inserted

    def add(self, chunk: Chunk) -> None:
        self.pending.append(chunk.good)
        pending_rows = sum(frame.height for frame in self.pending)
        self.waiting.append((chunk, pending_rows))
        self.records += chunk.records
        self.bad += len(chunk.bad)
        if self.first_bad is None and chunk.bad:
            self.first_bad = chunk.bad[0][:2]
        self.report.records += chunk.records
        if pending_rows >= INSERT_ROWS:
            self._insert(pending_rows - pending_rows % ROW_GROUP_ROWS, None)

    def finish(self, end: ReadEnd | None) -> None:
        """Insert all that waits; `end` is where the read ended (None after a failure: then the
        progress is that of the last chunk that came)."""
        self._insert(sum(frame.height for frame in self.pending), end)

    def _insert(self, rows: int, end: ReadEnd | None) -> None:
        pending = pl.concat(self.pending) if self.pending else None
        done = [chunk for chunk, through in self.waiting if through <= rows]
        self.waiting = [(chunk, through - rows) for chunk, through in self.waiting if through > rows]
        rest = pending.slice(rows) if pending is not None else None
        self.pending = [rest] if rest is not None and rest.height else []
        bad = pl.DataFrame(
            [entry for chunk in done for entry in chunk.bad],
            schema={"record_index": pl.Int32, "reason": pl.String, "payload": pl.String}, orient="row",
        ).with_columns(source=pl.lit(self.kind), batch_id=pl.lit(self.path))
        progress = end or (done[-1] if done else None)
        inserted = pending.head(rows) if pending is not None and rows else None
        new_rows, new_bad = self._commit(inserted, bad, progress, end is not None)
        if inserted is not None:
            self.report.duplicates += inserted.height - new_rows
        self.report.rows += new_rows
        self.report.quarantined += new_bad
        if done:
            self.loaded_through = done[-1].next_record

    @lake.retry_conflicts
    def _commit(self, inserted: pl.DataFrame | None, bad: pl.DataFrame, progress: Chunk | ReadEnd | None,
                read_to_end: bool) -> tuple[int, int]:
        """One transaction: the new rows and rejected records, and the file's progress; returns
        the rows and quarantine rows added."""
        new_rows = new_bad = 0
        with transaction(self.con):
            if inserted is not None:
                new_rows = _insert_new(self.con, self.kind, inserted, self.path)
            if bad.height:
                new_bad = _quarantine_new(self.con, bad)
            if progress is not None:
                _record_progress(self.con, self.kind, self.path, self.stat, progress.consumed, progress.next_record,
                                 progress.fingerprint, new_rows, new_bad)
            if read_to_end:
                self.con.execute("delete from raw.quarantine where source = ? and batch_id = ? and record_index = -1",
                                 [self.kind, self.path])
        return new_rows, new_bad


def _insert_new(con: duckdb.DuckDBPyConnection, kind: Kind, frame: pl.DataFrame, path: str) -> int:
    """Insert the rows whose key is neither in the table nor on an earlier row of `frame`;
    returns how many. The keys already there are looked up first, and the others inserted by a
    plain insert: inserting straight from an anti-join cost half again as much. (Not
    db.insert_frame: the file's name goes in as one constant rather than a column of copies.)"""
    table = TABLES[kind]
    first = _first_of_each_key(kind, frame)
    names = ", ".join(first.columns)
    with registered(con, "_incoming", first):
        existing = [row for (row,) in con.execute(f"select i.source_row from _incoming i join {table} t "
                                                  f"on {_same(KEY_COLUMNS[kind])} where {_HAS_KEY[kind]}").fetchall()]
        if kind == "sends" and first.height > first.filter(pl.col("serial_no").fill_null("").str.strip_chars() != "").height:
            # A failed send is its whole content; equal content means an equal SendTime, so
            # DuckDB reads only the row groups of those times.
            existing += [row for (row,) in con.execute(f"select i.source_row from _incoming i join {table} t "
                                                       f"on {_same(RAW_COLUMNS[kind])} where not ({_HAS_KEY[kind]})").fetchall()]
        if len(existing) < first.height:
            con.execute(
                f"insert into {table} ({names}, source_file) select {names}, $path from _incoming"
                + (" where source_row not in (select unnest($existing))" if existing else ""),
                {"path": path, **({"existing": existing} if existing else {})},
            )
    return first.height - len(existing)


def _first_of_each_key(kind: Kind, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of `frame` whose key no earlier row has, in file order."""
    if kind == "conversions":
        return frame.filter(pl.struct(KEY_COLUMNS[kind]).is_first_distinct())
    failed = pl.col("serial_no").fill_null("").str.strip_chars() == ""
    if frame.filter(failed).is_empty():
        return frame.filter(pl.struct(KEY_COLUMNS[kind]).is_first_distinct())
    return pl.concat([
        frame.filter(~failed).filter(pl.struct(KEY_COLUMNS[kind]).is_first_distinct()),
        frame.filter(failed).filter(pl.struct(RAW_COLUMNS[kind]).is_first_distinct()),
    ]).sort("source_row")


def _same(columns: list[str]) -> str:
    return " and ".join(f"t.{column} is not distinct from i.{column}" for column in columns)


# Which incoming rows are keyed by KEY_COLUMNS: a failed send (no SerialNo) is keyed by its content.
_HAS_KEY = {"sends": "coalesce(trim(i.serial_no), '') <> ''", "conversions": "true"}


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
    # MERGE, not `on conflict`: a lake's table has no primary key (db.upsert_frame; here rows and
    # quarantined add up over reads)
    con.execute(
        "merge into raw.source_files t using (select ? as source_file, ? as kind, ?::bigint as size_bytes, "
        "?::bigint as mtime_ns, ?::bigint as read_bytes, ?::bigint as records, ?::varchar as fingerprint, "
        "?::integer as rows, ?::integer as quarantined) s on (t.source_file = s.source_file) "
        "when matched then update set kind = s.kind, size_bytes = s.size_bytes, mtime_ns = s.mtime_ns, "
        "read_bytes = s.read_bytes, records = s.records, fingerprint = s.fingerprint, rows = t.rows + s.rows, "
        "quarantined = t.quarantined + s.quarantined, loaded_at = now() "
        "when not matched then insert (source_file, kind, size_bytes, mtime_ns, read_bytes, records, fingerprint, "
        "rows, quarantined) values (s.source_file, s.kind, s.size_bytes, s.mtime_ns, s.read_bytes, s.records, "
        "s.fingerprint, s.rows, s.quarantined)",
        [path, kind, stat.st_size, stat.st_mtime_ns, consumed, next_record, fingerprint, new_rows, new_bad],
    )


def _report_unreadable(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, exc: Exception, loaded_through: int,
                       report: SourceReport) -> None:
    """One problem line, and one quarantine row per file (replacing an earlier one). Rows loaded
    before stay, and raw.source_files still says how far the file was read, so it is tried again
    on every run from there until it reads."""
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    _replace_unreadable_row(con, kind, path, cause)
    report.quarantined += 1
    if loaded_through > 0:
        report.problems.append(f"{path}: cannot be read past record {loaded_through}, the records before it "
                               f"loaded ({cause})")
    else:
        report.problems.append(f"{path}: cannot be read, nothing loaded from it ({cause})")


@lake.retry_conflicts
def _replace_unreadable_row(con: duckdb.DuckDBPyConnection, kind: Kind, path: str, cause: str) -> None:
    with transaction(con):
        con.execute("delete from raw.quarantine where source = ? and batch_id = ? and record_index = -1", [kind, path])
        con.execute(
            "insert into raw.quarantine (source, reason, payload, batch_id, record_index) values (?, ?, null, ?, -1)",
            [kind, f"file cannot be read: {cause}", path],
        )
