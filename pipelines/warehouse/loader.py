"""Spooled responses into raw tables: one transaction per group of spool files, a batch ledger,
and a key per record, so that loading the same bytes twice changes nothing.

The order that makes a crash harmless: the transaction inserts the ledger rows and the records
together; the spool files are removed only after it commits. A crash before the commit leaves the
files to load again; a crash after it leaves files whose batch ids the ledger already holds, and
they are skipped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import duckdb
import orjson
import polars as pl

from pipelines.config import DEFAULT_PROVIDER_TIMEZONE, DEMO_SDK_APP_ID
from pipelines.ingest import callbacks
from pipelines.normalize.phones import normalize_phones
from pipelines.normalize.timestamps import unix_seconds_to_utc
from pipelines.tencent import actions as A
from pipelines.tencent.envelope import read_envelope
from pipelines.tencent.errors import TransportError
from pipelines.warehouse import lake
from pipelines.warehouse.db import insert_frame, registered, sql_text, transaction
from pipelines import progress
from pipelines.spool import INDETERMINATE, Spool, SpoolFile

# API field -> (raw column, polars type) of each record kind, in the API's documented order.
RECEIPT_FIELDS = {
    "SerialNo": ("serial_no", pl.Utf8),
    "PhoneNumber": ("phone_number", pl.Utf8),
    "CountryCode": ("country_code", pl.Utf8),
    "SubscriberNumber": ("subscriber_number", pl.Utf8),
    "ReportStatus": ("report_status", pl.Utf8),
    "Description": ("description", pl.Utf8),
    "UserReceiveTime": ("user_receive_time", pl.Int64),
    "SessionContext": ("session_context", pl.Utf8),
}
REPLY_FIELDS = {
    "PhoneNumber": ("phone_number", pl.Utf8),
    "CountryCode": ("country_code", pl.Utf8),
    "SubscriberNumber": ("subscriber_number", pl.Utf8),
    "SignName": ("sign_name", pl.Utf8),
    "ExtendCode": ("extend_code", pl.Utf8),
    "ReplyContent": ("reply_content", pl.Utf8),
    "ReplyTime": ("reply_time", pl.Int64),
}
META_COLUMNS = ["batch_id", "record_index", "action", "pulled_at", "request_id", "sms_sdk_app_id"]

# The table each pull action's records go to, and its fields.
_RECORD_KINDS = {
    A.PULL_SEND_STATUS: "raw.send_status",
    A.PULL_SEND_STATUS_BY_NUMBER: "raw.send_status",
    A.PULL_REPLY_STATUS: "raw.reply_status",
    A.PULL_REPLY_STATUS_BY_NUMBER: "raw.reply_status",
}
_TABLE_FIELDS = {"raw.send_status": RECEIPT_FIELDS, "raw.reply_status": REPLY_FIELDS}


@dataclasses.dataclass
class LoadReport:
    batches: int = 0
    skipped_batches: int = 0  # already in the ledger: a crash came between commit and file removal
    records: int = 0
    new_records: int = 0
    duplicates: int = 0
    quarantined: int = 0
    indeterminate: int = 0
    errors: int = 0
    error_codes: dict[str, int] = dataclasses.field(default_factory=dict)
    pushed_batches: list[str] = dataclasses.field(default_factory=list)  # batch ids of push callbacks loaded

    def add(self, other: LoadReport) -> None:
        for field in dataclasses.fields(self):
            if field.name == "error_codes":
                for code, n in other.error_codes.items():
                    self.error_codes[code] = self.error_codes.get(code, 0) + n
            else:
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class _Parsed:
    """One spool file, parsed: its ledger row, its records (still dicts) and their table, and
    what it sends to quarantine. Frames are built per group of files, not per file: polars' fixed
    cost per call would otherwise dominate pages of 100 records."""

    spooled: SpoolFile
    ledger: dict[str, Any]
    table: str | None = None
    records: list[Any] = dataclasses.field(default_factory=list)
    quarantine: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def load_spool(con: duckdb.DuckDBPyConnection, spool: Spool, *, files_per_transaction: int = 2500,
               files_per_frame: int = 500, provider_timezone: str = DEFAULT_PROVIDER_TIMEZONE,
               sdk_app_id: str = DEMO_SDK_APP_ID) -> LoadReport:
    """Load every pending spool file; returns what was loaded. `provider_timezone` reads the
    local times of pushed receipts (`SMSLEDGER_PROVIDER_TIMEZONE`); `sdk_app_id` is the
    application of files whose name does not say one (older spools; a reply push spooled without
    one has none: `callbacks.spooled_application`).

    Files are committed `files_per_transaction` at a time (each commit writes and may checkpoint
    the write-ahead log, so few large ones cost much less than many small ones) and parsed into
    frames `files_per_frame` at a time (what is held in memory as Python objects at once)."""
    spool.clean_temp()
    report = LoadReport()
    pending = list(spool.pending())
    task = progress.start("loading the spool", "files", total=len(pending))
    try:
        for i in range(0, len(pending), files_per_transaction):
            group = pending[i:i + files_per_transaction]
            report.add(load_files(con, spool, group, files_per_frame=files_per_frame,
                                  provider_timezone=provider_timezone, sdk_app_id=sdk_app_id,
                                  on_frame=lambda n: progress.advance(task, n)))
    finally:
        progress.finish(task)
    return report


@lake.retry_conflicts
def load_files(con: duckdb.DuckDBPyConnection, spool: Spool, files: Sequence[SpoolFile], *, files_per_frame: int = 500,
               provider_timezone: str = DEFAULT_PROVIDER_TIMEZONE,
               sdk_app_id: str = DEMO_SDK_APP_ID, on_frame: Callable[[int], None] | None = None) -> LoadReport:
    """Load a group of spool files in one transaction, then remove them."""
    report = LoadReport()
    ids = pl.DataFrame({"batch_id": [f.batch_id for f in files]}, schema={"batch_id": pl.Utf8})
    with registered(con, "_batch_ids", ids):  # (a frame: binding thousands of ids as a list parameter is slow)
        known = {row[0] for row in con.execute(
            "select batch_id from raw.batches where batch_id in (select batch_id from _batch_ids)").fetchall()}
    todo = [f for f in files if f.batch_id not in known]
    report.skipped_batches = len(files) - len(todo)
    if on_frame is not None and report.skipped_batches:
        on_frame(report.skipped_batches)
    ledger: list[dict[str, Any]] = []
    with transaction(con):
        for i in range(0, len(todo), files_per_frame):
            chunk = todo[i:i + files_per_frame]
            ledger += _load_parsed(con, [_parse_file(f, provider_timezone, callbacks.spooled_application(
                f.action, f.sdk_app_id, sdk_app_id)) for f in chunk], report)
            if on_frame is not None:
                on_frame(len(chunk))
        insert_frame(con, "raw.batches", pl.DataFrame(ledger, schema=_LEDGER_SCHEMA))
    report.duplicates = report.records - report.new_records - report.quarantined
    spool.remove(list(files))
    return report


def _load_parsed(con: duckdb.DuckDBPyConnection, parsed: list[_Parsed], report: LoadReport) -> list[dict[str, Any]]:
    """Insert the new records and the quarantine of some parsed files (inside the caller's
    transaction); returns their ledger rows and counts them in `report`."""
    frames: dict[str, pl.DataFrame] = {}
    quarantine = [row for p in parsed for row in p.quarantine]
    for table, fields in _TABLE_FIELDS.items():
        group = [p for p in parsed if p.table == table and p.records]
        if not group:
            continue
        frame, not_objects = records_frame(group, fields)
        frames[table], unkeyed = (_key_receipts if table == "raw.send_status" else _key_replies)(frame)
        quarantine += not_objects + unkeyed.to_dicts()
    quarantined: dict[str, int] = {}
    for row in quarantine:
        quarantined[row["batch_id"]] = quarantined.get(row["batch_id"], 0) + 1

    if "raw.send_status" in frames:
        _record_channels(con, frames["raw.send_status"])
    new_by_batch: dict[str, int] = {}
    for table, frame in frames.items():
        for batch_id, n in _insert_new(con, table, frame).items():
            new_by_batch[batch_id] = new_by_batch.get(batch_id, 0) + n
    if quarantine:
        _insert_quarantine(con, quarantine)
    ledger = []
    for p in parsed:
        if p.spooled.action in callbacks.ACTIONS:
            report.pushed_batches.append(p.spooled.batch_id)
        row = dict(p.ledger)
        row["new_records"] = new_by_batch.get(row["batch_id"], 0)
        row["quarantined"] = quarantined.get(row["batch_id"], 0)
        ledger.append(row)
        report.batches += 1
        report.records += row["records"]
        report.new_records += row["new_records"]
        report.quarantined += row["quarantined"]
        report.indeterminate += row["outcome"] == "indeterminate"
        if row["outcome"] in ("error", "unparseable"):
            report.errors += 1
            code = row["error_code"] or row["outcome"]
            report.error_codes[code] = report.error_codes.get(code, 0) + 1
    return ledger


_QUARANTINE_SCHEMA = {"source": pl.Utf8, "reason": pl.Utf8, "payload": pl.Utf8, "batch_id": pl.Utf8, "record_index": pl.Int32}
_LEDGER_SCHEMA = {
    "batch_id": pl.Utf8,
    "action": pl.Utf8,
    "pulled_at": pl.Datetime("us", "UTC"),
    "request_id": pl.Utf8,
    "outcome": pl.Utf8,
    "error_code": pl.Utf8,
    "error_message": pl.Utf8,
    "records": pl.Int32,
    "new_records": pl.Int32,
    "quarantined": pl.Int32,
    "pull_limit": pl.Int32,
    "pull_workers": pl.Int32,
    "pull_seconds": pl.Float64,
    "sms_sdk_app_id": pl.Utf8,
}


def _parse_file(spooled: SpoolFile, provider_timezone: str, sdk_app_id: str) -> _Parsed:
    ledger = {"batch_id": spooled.batch_id, "action": spooled.action, "pulled_at": _pulled_at(spooled),
              "request_id": None, "outcome": "ok", "error_code": None, "error_message": None, "records": 0,
              "pull_limit": None, "pull_workers": None, "pull_seconds": None, "sms_sdk_app_id": sdk_app_id}
    parsed = _Parsed(spooled, ledger)
    data = spooled.path.read_bytes()
    if spooled.kind == INDETERMINATE:
        ledger.update(outcome="indeterminate", **_marker(data))
        return parsed

    def unparseable(reason: str) -> _Parsed:
        ledger.update(outcome="unparseable", error_message=reason)
        parsed.quarantine.append(_q(spooled, reason, data.decode("utf-8", "replace"), -1))
        return parsed

    if spooled.action in callbacks.ACTIONS:  # a pushed body: no envelope, records in callback names
        try:
            batch = callbacks.map_body(spooled.action, data, provider_timezone)
        except callbacks.ShapeError as exc:
            return unparseable(str(exc))
        parsed.quarantine += [_q(spooled, reason, item, i) for i, reason, item in batch.rejected]
        ledger["records"], parsed.table, parsed.records = batch.total, callbacks.TABLES[spooled.action], batch.records
        return parsed
    if spooled.action not in _RECORD_KINDS:
        return unparseable(f"no loader for action {spooled.action}")
    try:
        envelope = read_envelope(spooled.action, data)
        ledger["request_id"] = envelope.request_id
        if envelope.error_code is not None:
            ledger.update(outcome="error", error_code=envelope.error_code, error_message=envelope.error_message)
            return parsed
        records = envelope.records()
    except TransportError as exc:
        return unparseable(exc.cause)
    ledger["records"] = len(records)
    parsed.table = _RECORD_KINDS[spooled.action]
    parsed.records = records
    return parsed


def _marker(data: bytes) -> dict[str, Any]:
    """The ledger fields of an indeterminate pull's marker (pipelines/ingest/drain.py); a marker of
    an older version, or of a single pull made by hand, is only its failure text."""
    try:
        marker = orjson.loads(data)
    except orjson.JSONDecodeError:
        marker = None
    if not isinstance(marker, dict) or not isinstance(marker.get("failure"), str):
        return {"error_message": data.decode("utf-8", "replace")[:1000]}

    def number(key: str, kind: type) -> Any:
        value = marker.get(key)
        return kind(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None

    return {"error_message": marker["failure"][:1000], "pull_limit": number("limit", int),
            "pull_workers": number("workers", int), "pull_seconds": number("seconds", float)}


def _pulled_at(spooled: SpoolFile) -> dt.datetime:
    return dt.datetime.fromtimestamp(spooled.pulled_at_ns / 1e9, dt.UTC)


def _q(spooled: SpoolFile, reason: str, payload: str, index: int) -> dict[str, Any]:
    return {"source": spooled.action, "reason": reason, "payload": payload, "batch_id": spooled.batch_id,
            "record_index": index}


def records_frame(group: list[_Parsed], fields: dict[str, tuple[str, Any]]) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """The records of a group of files as one typed frame, with where each came from. Unknown
    fields and values of an unexpected type are kept, as JSON in `extra_fields`, never dropped; a
    record that is not an object is quarantined."""
    quarantine: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    # Where each record came from, as the number of its file in `group` (ints: polars takes a list
    # of them at C speed, while a list of datetimes or strings costs a Python object per record).
    file_numbers: list[int] = []
    record_index: list[int] = []
    for number, p in enumerate(group):
        if set(map(type, p.records)) == {dict}:
            indexes: Sequence[int] = range(len(p.records))
            records += p.records
        else:
            indexes = [i for i, record in enumerate(p.records) if type(record) is dict]
            quarantine += [_q(p.spooled, "record is not a JSON object", orjson.dumps(record).decode(), i)
                           for i, record in enumerate(p.records) if type(record) is not dict]
            records += [p.records[i] for i in indexes]
        record_index += indexes
        file_numbers += [number] * len(indexes)
    files = pl.DataFrame(
        {"batch_id": [p.spooled.batch_id for p in group], "action": [p.spooled.action for p in group],
         "pulled_at": [p.ledger["pulled_at"] for p in group], "request_id": [p.ledger["request_id"] for p in group],
         "sms_sdk_app_id": [p.ledger["sms_sdk_app_id"] for p in group]},
        schema={"batch_id": pl.Utf8, "action": pl.Utf8, "pulled_at": pl.Datetime("us", "UTC"), "request_id": pl.Utf8,
                "sms_sdk_app_id": pl.Utf8},
    )
    meta = files[pl.Series(file_numbers, dtype=pl.Int64)] if file_numbers else files.clear()
    columns: dict[str, list[Any]] = {}
    odd: dict[int, dict[str, Any]] = {}  # record position -> its unknown fields and mistyped values
    for api_name, (column, dtype) in fields.items():
        values = [r.get(api_name) for r in records]
        expected = int if dtype == pl.Int64 else str
        # the per-value check runs only for a column holding something other than expected/None,
        # or an integer beyond BIGINT
        if not set(map(type, values)) <= {expected, type(None)} or (expected is int and _beyond_bigint(values)):
            for i, value in enumerate(values):
                if value is not None and (type(value) is not expected
                                          or (expected is int and not -(2**63) <= value < 2**63)):
                    odd.setdefault(i, {})[api_name] = value
                    values[i] = None
        columns[column] = values
    known = set(fields)
    if not known.issuperset(set().union(*records)):
        for i, record in enumerate(records):
            if not known.issuperset(record):
                odd.setdefault(i, {}).update({k: v for k, v in record.items() if k not in known})
    extras: list[str | None] = [None] * len(records)
    for i, extra in odd.items():
        extras[i] = orjson.dumps(extra).decode()
    frame = pl.DataFrame(
        {**columns, "extra_fields": extras, "record_index": record_index},
        schema={**{column: dtype for column, dtype in fields.values()}, "extra_fields": pl.Utf8, "record_index": pl.Int32},
    ).hstack(meta)
    return frame, quarantine


def _beyond_bigint(values: list[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and (max(present) >= 2**63 or min(present) < -(2**63))


def _seconds(frame: pl.DataFrame, column: str) -> pl.Series:
    """Whole unix seconds of a raw time column (milliseconds detected), for record keys."""
    normalized = unix_seconds_to_utc(frame.select(column), column, out="_t", flag="_f")
    return normalized["_t"].dt.epoch("s")


def _key_receipts(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Receipts keyed by SerialNo | ReportStatus | receive second; without SerialNo, quarantined."""
    frame = frame.with_columns(_seconds=_seconds(frame, "user_receive_time"))
    frame = frame.with_columns(
        pl.concat_str(
            [pl.col("serial_no"), pl.col("report_status").fill_null(""),
             pl.col("_seconds").cast(pl.Utf8).fill_null(pl.col("user_receive_time").cast(pl.Utf8)).fill_null("")],
            separator="|",
        ).alias("record_key")
    ).drop("_seconds")
    bad = pl.col("serial_no").is_null() | (pl.col("serial_no").str.strip_chars() == "")
    return frame.filter(~bad), _unkeyed(frame.filter(bad).with_columns(_reason=pl.lit("receipt without SerialNo")))


def _key_replies(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replies keyed by number | signature | reply second | content; a reply without a number or a
    usable time cannot be attributed or deduplicated, so it is quarantined."""
    seconds = _seconds(frame, "reply_time")
    phones = normalize_phones(
        frame.select("phone_number", "country_code", "subscriber_number").rename({"country_code": "cc_in"}),
        "phone_number", "cc_in", subscriber_number="subscriber_number",
    )["phone_e164"]
    number = phones.fill_null(frame["phone_number"].fill_null(frame["subscriber_number"]))
    frame = frame.with_columns(_number=number, _seconds=seconds)
    # The fields themselves, not a hash of them: polars' hash may change between versions, and a
    # key that changed would let a re-fetched reply in twice.
    frame = frame.with_columns(record_key=pl.concat_str(
        [pl.col("_number"), pl.col("sign_name").fill_null(""), pl.col("_seconds").cast(pl.Utf8),
         pl.col("reply_content").fill_null("")],
        separator="|",
    ))
    no_number = pl.col("_number").is_null() | (pl.col("_number").str.strip_chars() == "")
    bad = no_number | pl.col("_seconds").is_null()
    reasons = pl.when(no_number).then(pl.lit("reply without a phone number")).otherwise(pl.lit("reply without a usable ReplyTime"))
    unkeyed = frame.filter(bad).with_columns(_reason=reasons).drop("_number", "_seconds")
    return frame.filter(~bad).drop("_number", "_seconds"), _unkeyed(unkeyed)


def _unkeyed(frame: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows (source, reason, payload JSON, batch_id, record_index) of unkeyable records."""
    payload_columns = [c for c in frame.columns if c not in {*META_COLUMNS, "_reason", "record_key"}]
    payloads = [orjson.dumps(row).decode() for row in frame.select(payload_columns).iter_rows(named=True)]
    return pl.DataFrame(
        {"source": frame["action"], "reason": frame["_reason"], "payload": payloads, "batch_id": frame["batch_id"],
         "record_index": frame["record_index"]},
        schema=_QUARANTINE_SCHEMA,
    )


def _record_channels(con: duckdb.DuckDBPyConnection, receipts: pl.DataFrame) -> None:
    """Which channels pushed receipts arrived by (raw.receipt_channels), before they are stored.
    Receipts that all came by pull matter only if some receipt ever came by push."""
    if not receipts["action"].is_in(list(callbacks.ACTIONS)).any() and not con.execute(
            "select exists (select 1 from raw.receipt_channels where channel = 'callback')").fetchone()[0]:
        return
    arrivals = receipts.select(
        "record_key",
        channel=pl.when(pl.col("action").is_in(list(callbacks.ACTIONS))).then(pl.lit("callback")).otherwise(pl.lit("pull")),
    )
    with registered(con, "_arrivals", arrivals):
        con.execute(sql_text("staging/receipt_channels"))


def _insert_new(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> dict[str, int]:
    """Insert the records whose key (application and record_key) the table does not hold yet (the
    first of repeated ones); returns how many were new per batch. Only the keys the table holds
    already come back from DuckDB (few: repeats), and the new rows go in straight from the frame."""
    key = ["sms_sdk_app_id", "record_key"]
    incoming = frame.unique(subset=key, keep="first", maintain_order=True)
    with registered(con, "_incoming", incoming.select(key)):
        known = con.execute(f"select t.sms_sdk_app_id, t.record_key from {table} t semi join _incoming i "
                            "using (sms_sdk_app_id, record_key)").pl()
    new = incoming.join(known, on=key, how="anti", maintain_order="left") if known.height else incoming
    insert_frame(con, table, new)
    return dict(new.group_by("batch_id").len().iter_rows())


def _insert_quarantine(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> None:
    insert_frame(con, "raw.quarantine", pl.DataFrame(list(rows), schema=_QUARANTINE_SCHEMA))
