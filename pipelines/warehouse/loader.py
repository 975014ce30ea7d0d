"""Spooled responses into raw tables: one transaction per group of spool files, a batch ledger,
and a key per record, so that loading the same bytes twice changes nothing.

The order that makes a crash harmless: the transaction inserts the ledger rows and the records
together; the spool files are removed only after it commits. A crash before the commit leaves the
files to load again; a crash after it leaves files whose batch ids the ledger already holds, and
they are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any

import duckdb
import orjson
import polars as pl

from pipelines.normalize.phones import normalize_phones
from pipelines.normalize.timestamps import unix_seconds_to_utc
from pipelines.tencent import actions as A
from pipelines.warehouse.db import transaction
from pipelines.warehouse.spool import BODY, INDETERMINATE, Spool, SpoolFile

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
META_COLUMNS = ["batch_id", "record_index", "action", "pulled_at", "request_id"]

_RECORD_KINDS = {
    A.PULL_SEND_STATUS: ("raw.send_status", RECEIPT_FIELDS),
    A.PULL_SEND_STATUS_BY_NUMBER: ("raw.send_status", RECEIPT_FIELDS),
    A.PULL_REPLY_STATUS: ("raw.reply_status", REPLY_FIELDS),
    A.PULL_REPLY_STATUS_BY_NUMBER: ("raw.reply_status", REPLY_FIELDS),
}


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

    def add(self, other: LoadReport) -> None:
        for field in dataclasses.fields(self):
            if field.name == "error_codes":
                for code, n in other.error_codes.items():
                    self.error_codes[code] = self.error_codes.get(code, 0) + n
            else:
                setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


@dataclasses.dataclass
class _Parsed:
    """One spool file, parsed: its ledger row, its records by table, its quarantine rows."""

    ledger: dict[str, Any]
    table: str | None = None
    frame: pl.DataFrame | None = None
    quarantine: list[dict[str, Any]] = dataclasses.field(default_factory=list)


def load_spool(con: duckdb.DuckDBPyConnection, spool: Spool, *, files_per_transaction: int = 500) -> LoadReport:
    """Load every pending spool file; returns what was loaded."""
    report = LoadReport()
    group: list[SpoolFile] = []
    for spooled in spool.pending():
        group.append(spooled)
        if len(group) >= files_per_transaction:
            report.add(load_files(con, spool, group))
            group = []
    if group:
        report.add(load_files(con, spool, group))
    return report


def load_files(con: duckdb.DuckDBPyConnection, spool: Spool, files: Sequence[SpoolFile]) -> LoadReport:
    report = LoadReport()
    ids = [f.batch_id for f in files]
    known = {row[0] for row in con.execute("select batch_id from raw.batches where batch_id in (select unnest($ids))", {"ids": ids}).fetchall()}
    todo = [f for f in files if f.batch_id not in known]
    report.skipped_batches = len(files) - len(todo)
    parsed = [_parse_file(f) for f in todo]

    frames: dict[str, list[pl.DataFrame]] = {}
    for p in parsed:
        if p.frame is not None and p.frame.height:
            frames.setdefault(p.table, []).append(p.frame)
    with transaction(con):
        new_by_batch: dict[str, int] = {}
        for table, parts in frames.items():
            frame = pl.concat(parts, how="vertical_relaxed")
            inserted = _insert_new(con, table, frame)
            for batch_id, n in inserted.items():
                new_by_batch[batch_id] = new_by_batch.get(batch_id, 0) + n
        quarantine = [row for p in parsed for row in p.quarantine]
        if quarantine:
            _insert_quarantine(con, quarantine)
        ledger = []
        for p in parsed:
            row = dict(p.ledger)
            row["new_records"] = new_by_batch.get(row["batch_id"], 0)
            row["quarantined"] = len(p.quarantine)
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
        if ledger:
            ledger_frame = pl.DataFrame(ledger, schema=_LEDGER_SCHEMA)  # noqa: F841 (read by DuckDB)
            con.execute(f"insert into raw.batches ({', '.join(_LEDGER_SCHEMA)}) select {', '.join(_LEDGER_SCHEMA)} from ledger_frame")
    report.duplicates = report.records - report.new_records - report.quarantined
    spool.remove(list(files))
    return report


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
}


def _parse_file(spooled: SpoolFile) -> _Parsed:
    pulled_at = spooled.pulled_at_ns // 1000  # microseconds
    ledger = {"batch_id": spooled.batch_id, "action": spooled.action, "pulled_at": _us(pulled_at), "request_id": None,
              "outcome": "ok", "error_code": None, "error_message": None, "records": 0}
    data = spooled.path.read_bytes()
    if spooled.kind == INDETERMINATE:
        ledger.update(outcome="indeterminate", error_message=data.decode("utf-8", "replace")[:1000])
        return _Parsed(ledger)
    assert spooled.kind == BODY
    try:
        response = orjson.loads(data)["Response"]
        if not isinstance(response, dict):
            raise TypeError("Response is not an object")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        reason = f"response is not the API's JSON envelope: {exc.__class__.__name__}: {exc}"
        ledger.update(outcome="unparseable", error_message=reason)
        return _Parsed(ledger, quarantine=[_q(spooled, reason, data.decode("utf-8", "replace"), -1)])
    ledger["request_id"] = response.get("RequestId")
    error = response.get("Error")
    if error:
        ledger.update(outcome="error", error_code=str(error.get("Code")), error_message=str(error.get("Message")))
        return _Parsed(ledger)
    if spooled.action not in _RECORD_KINDS:
        ledger.update(outcome="unparseable", error_message=f"no loader for action {spooled.action}")
        return _Parsed(ledger, quarantine=[_q(spooled, ledger["error_message"], data.decode("utf-8", "replace"), -1)])
    table, fields = _RECORD_KINDS[spooled.action]
    records = response.get(A.RECORD_SET[spooled.action]) or []
    if not isinstance(records, list):
        reason = f"{A.RECORD_SET[spooled.action]} is not a list"
        ledger.update(outcome="unparseable", error_message=reason)
        return _Parsed(ledger, quarantine=[_q(spooled, reason, data.decode("utf-8", "replace"), -1)])
    ledger["records"] = len(records)
    frame, quarantine = records_frame(records, fields, spooled, ledger["request_id"])
    if table == "raw.send_status":
        frame, unkeyed = _key_receipts(frame)
    else:
        frame, unkeyed = _key_replies(frame)
    quarantine += [_q(spooled, reason, payload, index) for index, reason, payload in unkeyed.iter_rows()]
    return _Parsed(ledger, table, frame, quarantine)


def _us(microseconds: int):
    import datetime as dt

    return dt.datetime.fromtimestamp(microseconds / 1e6, dt.UTC)


def _q(spooled: SpoolFile, reason: str, payload: str, index: int) -> dict[str, Any]:
    return {"source": spooled.action, "reason": reason, "payload": payload, "batch_id": spooled.batch_id, "record_index": index}


def records_frame(
    records: list[Any], fields: dict[str, tuple[str, Any]], spooled: SpoolFile, request_id: str | None
) -> tuple[pl.DataFrame, list[dict[str, Any]]]:
    """Records as a typed frame. Unknown fields and values of an unexpected type are kept, as
    JSON in `extra_fields`, never dropped; a record that is not an object is quarantined."""
    quarantine: list[dict[str, Any]] = []
    columns: dict[str, list[Any]] = {column: [] for column, _ in fields.values()}
    extras: list[str | None] = []
    indexes: list[int] = []
    for index, record in enumerate(records):
        if not isinstance(record, dict):
            quarantine.append(_q(spooled, "record is not a JSON object", orjson.dumps(record).decode(), index))
            continue
        extra: dict[str, Any] = {}
        for key, value in record.items():
            if key not in fields:
                extra[key] = value
        for api_name, (column, dtype) in fields.items():
            value = record.get(api_name)
            if value is not None and not _fits(value, dtype):
                extra[api_name] = value
                value = None
            columns[column].append(value)
        extras.append(orjson.dumps(extra).decode() if extra else None)
        indexes.append(index)
    schema = {column: dtype for column, dtype in fields.values()}
    frame = pl.DataFrame(columns, schema=schema).with_columns(
        pl.Series("extra_fields", extras, dtype=pl.Utf8),
        pl.Series("record_index", indexes, dtype=pl.Int32),
        pl.lit(spooled.batch_id).alias("batch_id"),
        pl.lit(spooled.action).alias("action"),
        pl.lit(_us(spooled.pulled_at_ns // 1000)).cast(pl.Datetime("us", "UTC")).alias("pulled_at"),
        pl.lit(request_id, dtype=pl.Utf8).alias("request_id"),
    )
    return frame, quarantine


def _fits(value: Any, dtype: Any) -> bool:
    if dtype == pl.Int64:
        return type(value) is int and -(2**63) <= value < 2**63
    return type(value) is str


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
    return frame.filter(~bad), _unkeyed(frame.filter(bad), "receipt without SerialNo")


def _key_replies(frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replies keyed by number | signature | reply second | content; a reply without a
    number or a usable time cannot be attributed or deduplicated, so it is quarantined."""
    seconds = _seconds(frame, "reply_time")
    phones = normalize_phones(
        frame.select("phone_number", "country_code", "subscriber_number").rename({"country_code": "cc_in"}),
        "phone_number", "cc_in", subscriber_number="subscriber_number",
    )["phone_e164"]
    number = phones.fill_null(frame["phone_number"].fill_null(frame["subscriber_number"]))
    frame = frame.with_columns(_number=number, _seconds=seconds)
    # The fields themselves, not a hash of them: polars' hash may change between versions, and a
    # key that changed would let a re-fetched reply in twice.
    key = pl.concat_str(
        [pl.col("_number"), pl.col("sign_name").fill_null(""), pl.col("_seconds").cast(pl.Utf8),
         pl.col("reply_content").fill_null("")],
        separator="|",
    )
    frame = frame.with_columns(record_key=key)
    no_number = pl.col("_number").is_null() | (pl.col("_number").str.strip_chars() == "")
    no_time = pl.col("_seconds").is_null()
    bad = no_number | no_time
    reasons = pl.when(no_number).then(pl.lit("reply without a phone number")).otherwise(pl.lit("reply without a usable ReplyTime"))
    unkeyed = frame.filter(bad).with_columns(_reason=reasons)
    good = frame.filter(~bad).drop("_number", "_seconds")
    return good, _unkeyed(unkeyed.drop("_number", "_seconds"), None)


def _unkeyed(frame: pl.DataFrame, reason: str | None) -> pl.DataFrame:
    """(record_index, reason, payload JSON) of records to quarantine."""
    if reason is not None:
        frame = frame.with_columns(_reason=pl.lit(reason))
    payload_columns = [c for c in frame.columns if c not in {"batch_id", "record_index", "action", "pulled_at", "request_id", "_reason", "record_key"}]
    payloads = [orjson.dumps(row).decode() for row in frame.select(payload_columns).iter_rows(named=True)]
    return pl.DataFrame({"record_index": frame["record_index"], "reason": frame["_reason"], "payload": payloads},
                        schema={"record_index": pl.Int32, "reason": pl.Utf8, "payload": pl.Utf8})


def _insert_new(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> dict[str, int]:
    """Insert the records whose key the table does not hold yet (the first of repeated ones);
    returns how many were new per batch."""
    frame = frame.unique(subset="record_key", keep="first", maintain_order=True)  # noqa: F841 (read by DuckDB)
    columns = [c for c in frame.columns]
    names = ", ".join(columns)
    con.execute(
        f"create or replace temp table _incoming as select {names} from frame "
        f"where record_key not in (select record_key from {table})"
    )
    con.execute(f"insert into {table} ({names}) select {names} from _incoming")
    counts = con.execute("select batch_id, count(*) from _incoming group by batch_id").fetchall()
    con.execute("drop table _incoming")
    return dict(counts)


def _insert_quarantine(con: duckdb.DuckDBPyConnection, rows: Iterable[dict[str, Any]]) -> None:
    q = pl.DataFrame(list(rows), schema={"source": pl.Utf8, "reason": pl.Utf8, "payload": pl.Utf8, "batch_id": pl.Utf8, "record_index": pl.Int32})  # noqa: F841
    con.execute("insert into raw.quarantine (source, reason, payload, batch_id, record_index) select source, reason, payload, batch_id, record_index from q")
