"""Phone numbers and reply texts kept only as long as the pipeline needs them (PIPL, GDPR).

Raw numbers live in the raw and staging layers only. Past SMSLEDGER_PII_RETENTION_DAYS, a record
no longer needs its number: gap filling asks by number for 7 days at most, the daily run rebuilds
a fixed window of days, and a reply is attributed to a delivery a few days before it (the settings
refuse a retention shorter than that, `Settings.pii_minimum_retention_days`). Then:

* the number columns of raw.send_status, raw.reply_status, raw.sends and of staging.sends,
  staging.receipts, staging.replies become null (country codes, validity, times and statuses stay);
* a reply's record_key, which contains its number, becomes `purged|<batch>|<record>` in raw and
  the same in staging (still one key per reply; no hash of the number, which a search over every
  number could reverse);
* raw.gap_fill_calls rows (a number asked) are deleted, and raw.quarantine payloads (the rejected
  record as received) become null, their reason kept;
* staging.phone_numbers (normalized forms) and staging.phone_tokens (tokens, with
  SMSLEDGER_PII_KEY) lose the numbers just purged that no younger row names;
* reply texts follow SMSLEDGER_REPLY_TEXT: kept, kept only for opt-outs, or dropped (null), once
  the rebuild window is past (at the retention when one is set, else at its minimum): the marts
  need a reply's text to tell an opt-out until its day is final.

A record's age is its arrival (`pulled_at`; a sends-log row's `SendTime`): a late receipt keeps its
number for the whole retention after it came. Every change is counted by table for the run's
metadata; nothing is purged silently, and a purged row is never counted twice. Each statement
touches only rows older than the cutoff that still hold something to purge, so a run with nothing
to do reads little.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb

from pipelines.warehouse import lake
from pipelines.warehouse.db import transaction

PURGED_KEY_PREFIX = "purged|"

# The number columns of each table, and the column that says how old a row is. Replies are purged
# by `_purge_reply_numbers` (their keys hold numbers too).
_NUMBERS = {
    "raw.send_status": (("phone_number", "subscriber_number"), "pulled_at"),
    "raw.sends": (("phone_number",), "to_timestamp(unix_seconds(send_time))"),
    "staging.sends": (("phone_number", "phone_e164"), "sent_at"),
    "staging.receipts": (("phone_number", "phone_e164"), "pulled_at"),
}
_REPLY_NUMBERS = {
    "raw.reply_status": (("phone_number", "subscriber_number"), "pulled_at"),
    "staging.replies": (("phone_number", "phone_e164"), "pulled_at"),
}
# Which rows still hold their numbers after a purge (the younger ones), as a filter on the age
# column itself, so that DuckDB skips the row groups of older rows by their min/max. raw.sends: a
# SendTime in milliseconds is always "young" here, which only makes the check look at it.
_YOUNG = {
    "raw.send_status": "pulled_at >= $cutoff", "raw.sends": "send_time >= $cutoff_s", "staging.sends": "sent_at >= $cutoff",
    "staging.receipts": "pulled_at >= $cutoff", "raw.reply_status": "pulled_at >= $cutoff",
    "staging.replies": "pulled_at >= $cutoff",
}


def _numbers_of(rows: dict[str, str]) -> str:
    """A union of every number column of raw and staging as `number`, of each table's `rows`."""
    return " union all ".join(
        f"select {column} as number from {table} where {rows[table]} and {column} is not null"
        for table, (columns, _) in {**_NUMBERS, **_REPLY_NUMBERS}.items() for column in columns)


@dataclasses.dataclass
class PurgeReport:
    numbers_before: dt.datetime | None
    texts_before: dt.datetime | None
    rows: dict[str, int] = dataclasses.field(default_factory=dict)  # table -> rows whose numbers were purged
    reply_texts: dict[str, int] = dataclasses.field(default_factory=dict)  # table -> reply texts dropped
    gap_fill_calls_deleted: int = 0
    quarantine_payloads: int = 0
    lake_snapshots_expired: int = 0  # on DuckLake: the history that still held the purged values
    lake_files_deleted: int = 0

    @property
    def total(self) -> int:
        return (sum(self.rows.values()) + sum(self.reply_texts.values()) + self.gap_fill_calls_deleted
                + self.quarantine_payloads)


def purge_personal_data(con: duckdb.DuckDBPyConnection, *, numbers_before: dt.datetime | None,
                        texts_before: dt.datetime | None, reply_text: str = "keep",
                        opt_out_words: list[str] | None = None) -> PurgeReport:
    """Purge the numbers of rows older than `numbers_before`, and reply texts older than
    `texts_before` per `reply_text` (None: nothing of that kind), in one transaction."""
    report = PurgeReport(numbers_before, texts_before)
    with transaction(con):
        if numbers_before is not None:
            _purge_numbers(con, report, numbers_before)
        if texts_before is not None and reply_text != "keep":
            _purge_texts(con, report, texts_before, reply_text, opt_out_words or [])
    if report.total and lake.is_lake_connection(con):
        report.lake_snapshots_expired, report.lake_files_deleted = _forget_lake_history(con)
    return report


def _forget_lake_history(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    """On DuckLake an update writes a new snapshot and keeps the old files, which time travel
    (`at (version => n)`) still reads: the purged numbers would stay readable until maintenance
    expired them. So a purge that changed rows expires every snapshot before it and deletes the
    files no snapshot references any more (not orphaned files: those may be a running writer's,
    pipelines/warehouse/maintenance.py). Time travel then reaches back to the purge, no further."""
    catalog = lake.CATALOG
    expired = lake.retry_on_conflict(lambda: con.execute(
        f"select snapshot_id from ducklake_expire_snapshots('{catalog}', older_than => now())").fetchall())
    deleted = lake.retry_on_conflict(lambda: con.execute(
        f"select path from ducklake_cleanup_old_files('{catalog}', cleanup_all => true)").fetchall())
    return len(expired), len(deleted)


def _purge_numbers(con: duckdb.DuckDBPyConnection, report: PurgeReport, cutoff: dt.datetime) -> None:
    at = {"cutoff": cutoff}
    # the numbers this run takes away (only they can have lost their last row)
    older = {table: f"{age} < $cutoff" for table, (_, age) in {**_NUMBERS, **_REPLY_NUMBERS}.items()}
    con.execute(f"create or replace temp table _purged_numbers as select distinct number from ({_numbers_of(older)})", at)
    try:
        for table, (columns, age) in _NUMBERS.items():
            held = " or ".join(f"{column} is not null" for column in columns)
            nulls = ", ".join(f"{column} = null" for column in columns)
            report.rows[table] = _changed(con, f"update {table} set {nulls} where {age} < $cutoff and ({held})", at)
        _purge_reply_numbers(con, report, cutoff)
        _prune_unnamed_numbers(con, report, cutoff)
    finally:
        con.execute("drop table if exists _purged_numbers")
    report.gap_fill_calls_deleted = _changed(con, "delete from raw.gap_fill_calls where called_at < $cutoff", at)
    report.quarantine_payloads = _changed(
        con, "update raw.quarantine set payload = null where quarantined_at < $cutoff and payload is not null", at)


def _prune_unnamed_numbers(con: duckdb.DuckDBPyConnection, report: PurgeReport, cutoff: dt.datetime) -> None:
    """staging.phone_numbers (each number's normalized form, to normalize it once) and
    staging.phone_tokens (each number's token, to compute it once) lose the numbers just purged
    that no row of raw or staging names any more. Only those are looked at, and only against the
    rows young enough to keep their numbers: the cost follows what this run purged, not the size
    of the tables."""
    at = {"cutoff": cutoff, "cutoff_s": int(cutoff.timestamp())}
    touched = ("(phone_number in (select number from _purged_numbers) "
               "or subscriber_number in (select number from _purged_numbers))")
    # A normalized entry is (phone_number, country code, subscriber_number): both of its numbers
    # must be unnamed for it to go.
    con.execute(
        "create or replace temp table _still_named as "
        "select distinct n.number from (select number from _purged_numbers "
        f"  union select phone_number from staging.phone_numbers where {touched} "
        f"  union select subscriber_number from staging.phone_numbers where {touched}) n "
        f"semi join ({_numbers_of(_YOUNG)}) named on named.number = n.number", at)
    try:
        report.rows["staging.phone_numbers"] = _changed(
            con, f"delete from staging.phone_numbers where {touched} "
                 "and coalesce(phone_number not in (select number from _still_named), true) "
                 "and coalesce(subscriber_number not in (select number from _still_named), true)")
        report.rows["staging.phone_tokens"] = _changed(
            con, "delete from staging.phone_tokens where phone_e164 in (select number from _purged_numbers) "
                 "and phone_e164 not in (select number from _still_named)")
    finally:
        con.execute("drop table if exists _still_named")


def _purge_reply_numbers(con: duckdb.DuckDBPyConnection, report: PurgeReport, cutoff: dt.datetime) -> None:
    """Replies: the number out of their columns and out of their record_key, in raw and in
    staging (whose rows carry the same keys). A reply is (sms_sdk_app_id, record_key): two
    applications may hold the same key (one person's same reply to both). A reply pushed without
    its application is '' in raw and null in staging."""
    con.execute(
        "create or replace temp table _purged_replies as "
        f"select sms_sdk_app_id as app, record_key as old_key, '{PURGED_KEY_PREFIX}' || batch_id || '|' || record_index "
        f"as new_key from raw.reply_status where pulled_at < $cutoff and record_key not like '{PURGED_KEY_PREFIX}%'",
        {"cutoff": cutoff})
    # no `update ... from`, nor `delete ... using`: a DuckLake catalog takes plain updates only
    try:
        report.rows["staging.replies"] = _changed(
            con, "update staging.replies set phone_number = null, phone_e164 = null, record_key = "
                 "(select min(p.new_key) from _purged_replies p where p.old_key = staging.replies.record_key "
                 "and nullif(p.app, '') is not distinct from staging.replies.sms_sdk_app_id) "
                 "where exists (select 1 from _purged_replies p where p.old_key = staging.replies.record_key "
                 "and nullif(p.app, '') is not distinct from staging.replies.sms_sdk_app_id)")
        report.rows["raw.reply_status"] = _changed(
            con, f"update raw.reply_status set record_key = '{PURGED_KEY_PREFIX}' || batch_id || '|' || record_index, "
                 f"phone_number = null, subscriber_number = null "
                 f"where pulled_at < $cutoff and record_key not like '{PURGED_KEY_PREFIX}%'", {"cutoff": cutoff})
    finally:
        con.execute("drop table if exists _purged_replies")


def _purge_texts(con: duckdb.DuckDBPyConnection, report: PurgeReport, cutoff: dt.datetime, reply_text: str,
                 opt_out_words: list[str]) -> None:
    # Opt-outs are recognised as marts/replies.sql does (the `is_opt_out` macro): their text may
    # be kept, since a person may have to show that a number opted out.
    kept = "is_opt_out(reply_content, $words)" if reply_text == "optout-only" else "false"
    params = {"cutoff": cutoff, **({"words": opt_out_words} if reply_text == "optout-only" else {})}
    for table in ("raw.reply_status", "staging.replies"):
        report.reply_texts[table] = _changed(
            con, f"update {table} set reply_content = null where pulled_at < $cutoff and reply_content is not null "
                 f"and not {kept}", params)


def _changed(con: duckdb.DuckDBPyConnection, sql: str, params: dict | None = None) -> int:
    """Rows an update or delete changed."""
    row = con.execute(sql, params or {}).fetchone()
    return int(row[0]) if row else 0
