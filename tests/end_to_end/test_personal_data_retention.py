"""SMSLEDGER_PII_RETENTION_DAYS and SMSLEDGER_REPLY_TEXT through the drain job: numbers of rows
older than the retention leave every text column of raw and staging (a scan for every number the
simulator sent to finds none), reply keys included, each purge counted in the run's metadata;
younger rows keep theirs; reply texts are kept for opt-outs only when asked. A retention shorter
than the pipeline needs is refused in one line."""

import dataclasses
import datetime as dt
import re

import dagster as dg
import duckdb
import pytest
from support import pipeline_settings, start

from pipelines.app.demo import DEMO_RATE_SCALE
from pipelines.app.runner import instance, run_days, run_drain
from pipelines.config import ConfigError, Settings

OPT_OUT = ["td", "t", "退订", "stop", "unsubscribe"]
DAYS = 3
RETENTION = 14


def text_columns(con):
    return con.execute("select schema_name, table_name, column_name from duckdb_columns() "
                       "where schema_name in ('raw', 'staging') and data_type in ('VARCHAR', 'JSON') "
                       "and database_name = current_database() order by all").fetchall()


def numbers_found(con, subscribers):
    """(table.column, rows) of every text column of raw and staging holding a subscriber number."""
    found = []
    with_numbers = con.execute("select unnest($s) as n", {"s": sorted(subscribers)}).pl()
    con.register("_subscribers", with_numbers)
    for schema, table, column in text_columns(con):
        n = con.execute(f"select count(*) from {schema}.{table} t join _subscribers s "
                        f"on contains(t.{column}::varchar, s.n)").fetchone()[0]
        if n:
            found.append((f"{schema}.{table}.{column}", n))
    con.unregister("_subscribers")
    return found


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("pii")
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sim = start(messages_per_day=300, days=DAYS, now=end.timestamp(), out_dir=root / "sim", rate_scale=DEMO_RATE_SCALE)
    first = (end - dt.timedelta(days=DAYS)).date()
    settings = pipeline_settings(root, sim, first)
    run_drain(settings, log=lambda _: None)
    run_days(settings, first, (end - dt.timedelta(days=1)).date(), log=lambda _: None)
    # the last 8 digits of every number messaged or replying: in any form a number takes
    subscribers = ({m["phone_e164"][-8:] for m in sim.state.truth_messages()}
                   | {r["phone"][-8:] for r in sim.state.truth_replies()})
    yield sim, settings, subscribers
    sim.close()


def test_old_numbers_leave_raw_and_staging_counted_and_young_ones_stay(world):
    sim, settings, subscribers = world
    con = duckdb.connect(str(settings.warehouse))
    assert numbers_found(con, subscribers)  # the scan sees numbers where they are
    # Every record but the receipts of one serial number came long ago (its arrival is what ages it).
    young = con.execute("select min(serial_no) from raw.send_status").fetchone()[0]
    old = "pulled_at - interval 30 days"
    con.execute(f"update raw.send_status set pulled_at = {old} where serial_no <> $young", {"young": young})
    con.execute(f"update staging.receipts set pulled_at = {old} where serial_no <> $young", {"young": young})
    for table in ("raw.reply_status", "staging.replies", "raw.quarantine"):
        con.execute(f"update {table} set {'quarantined_at' if 'quarantine' in table else 'pulled_at'} = "
                    f"{'quarantined_at' if 'quarantine' in table else 'pulled_at'} - interval 30 days")
    con.execute("update raw.gap_fill_calls set called_at = called_at - interval 30 days")
    con.execute("update raw.sends set send_time = send_time - 30 * 86400 where serial_no <> $young", {"young": young})
    con.execute("update staging.sends set sent_at = sent_at - interval 30 days where serial_no <> $young", {"young": young})
    expected = {table: con.execute(f"select count(*) from {table} where phone_number is not null "
                                   f"and coalesce(serial_no, '') <> $young", {"young": young}).fetchone()[0]
                for table in ("raw.send_status", "raw.sends", "staging.sends", "staging.receipts")}
    expected["raw.reply_status"] = con.execute("select count(*) from raw.reply_status").fetchone()[0]
    replies = con.execute("select reply_content from raw.reply_status").fetchall()
    opt_outs = sum(text is not None and re.sub(r"^[\s\W_]+|[\s\W_]+$", "", text).lower() in OPT_OUT
                   for (text,) in replies)
    young_numbers = con.execute("select count(*) from raw.send_status where serial_no = $young", {"young": young}).fetchone()[0]
    con.close()
    assert all(expected.values()) and replies and young_numbers

    purging = dataclasses.replace(settings, pii_retention_days=RETENTION, reply_text="optout-only")
    run_drain(purging, log=lambda _: None)
    event = instance(purging).get_latest_materialization_event(dg.AssetKey(["raw", "personal_data_purge"]))
    metadata = {k: getattr(v, "value", v) for k, v in event.asset_materialization.metadata.items()}
    for table, n in expected.items():
        assert metadata[f"numbers_purged_{table.replace('.', '_')}"] == n, table
    assert metadata["reply_texts_dropped_raw_reply_status"] == len(replies) - opt_outs

    con = duckdb.connect(str(settings.warehouse))
    # no number is left but that of the young message, which keeps it
    young_number = next(m["phone_e164"][-8:] for m in sim.state.truth_messages() if m["serial_no"] == young)
    assert numbers_found(con, subscribers - {young_number}) == []
    assert numbers_found(con, {young_number})
    assert con.execute("select count(*) from raw.send_status where serial_no = $young and phone_number is not null",
                       {"young": young}).fetchone()[0] == young_numbers
    assert con.execute("select count(*) from raw.reply_status where record_key not like 'purged|%'").fetchone() == (0,)
    assert con.execute("select count(*), count(distinct record_key) from raw.reply_status").fetchone() == (
        len(replies), len(replies))
    kept = con.execute("select count(*) from raw.reply_status where reply_content is not null").fetchone()[0]
    assert kept == opt_outs
    con.close()

    # a second run finds nothing left to purge: nothing is counted twice
    run_drain(purging, log=lambda _: None)
    event = instance(purging).get_latest_materialization_event(dg.AssetKey(["raw", "personal_data_purge"]))
    assert all(getattr(v, "value", v) in (0, RETENTION, "optout-only") or k == "numbers_before"
               for k, v in event.asset_materialization.metadata.items()), event.asset_materialization.metadata


def test_a_retention_shorter_than_the_pipeline_needs_is_refused():
    env = {"TENCENTCLOUD_SECRET_ID": "id", "TENCENTCLOUD_SECRET_KEY": "key"}
    with pytest.raises(ConfigError, match=r"^SMSLEDGER_PII_RETENTION_DAYS=11 must be at least 12: "):
        Settings.from_env({**env, "SMSLEDGER_PII_RETENTION_DAYS": "11"})
    assert Settings.from_env({**env, "SMSLEDGER_PII_RETENTION_DAYS": "12"}).pii_retention_days == 12
