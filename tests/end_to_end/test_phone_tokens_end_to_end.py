"""SMSLEDGER_PII_KEY end to end against the simulator: `smsledger sync` with a key leaves no
number the simulator sent, in E.164 or national form, in any text column of any mart, nor in its output or the runs' Dagster events and
metadata; the marts hold each number's token and masked form; replies are attributed exactly as
without the key on the same traffic. Then the purge (SMSLEDGER_PII_RETENTION_DAYS) leaves no
number in raw or staging either, and the marts keep their tokens."""

import dataclasses
import datetime as dt
import shutil

import dagster as dg
import duckdb
import phonenumbers
import pytest
from support import pipeline_settings, smsledger, start

from pipelines.app.demo import DEMO_RATE_SCALE
from pipelines.app.runner import instance, run_days, run_drain
from pipelines.normalize.pii import masked, phone_token

KEY = "end-to-end-pii-key-0123456789abcdef"
DAYS = 3


def forms_of(numbers):
    """Every number in E.164 and in national form (the national one is inside the E.164 one)."""
    national = {str(phonenumbers.parse(n).national_number) for n in numbers}
    return set(numbers) | national


def holding(con, schemas, numbers):
    """(schema.table.column, rows) of every text column of `schemas` with a value containing a number."""
    con.register("_numbers", duckdb.sql("select unnest($n) as n", params={"n": sorted(numbers)}).pl())
    found = []
    for schema, table, column in con.execute(
            "select schema_name, table_name, column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name in (select unnest($s)) and data_type in ('VARCHAR', 'JSON') order by all",
            {"s": list(schemas)}).fetchall():
        n = con.execute(f"select count(*) from {schema}.{table} t join _numbers s on contains(t.{column}::varchar, s.n)"
                        ).fetchone()[0]
        if n:
            found.append((f"{schema}.{table}.{column}", n))
    con.unregister("_numbers")
    return found


def events_text(settings):
    """Every event of every run of the instance (messages, metadata, errors), as text."""
    with instance(settings) as dagster_instance:
        return "\n".join(repr(event) for run in dagster_instance.get_runs()
                         for event in dagster_instance.all_logs(run.run_id))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    end = dt.datetime.now(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=1)
    sim = start(messages_per_day=300, days=DAYS, now=end.timestamp(), out_dir=root / "sim", rate_scale=DEMO_RATE_SCALE)
    settings = pipeline_settings(root, sim, dt.date(2026, 1, 1), pii_key=KEY)
    env = {"SMSLEDGER_ENDPOINT": sim.url, "SMSLEDGER_WAREHOUSE": str(settings.warehouse),
           "SMSLEDGER_SPOOL_DIR": str(settings.spool_dir), "SMSLEDGER_SENDS_PATH": settings.sends_path,
           "SMSLEDGER_CONVERSIONS_PATH": settings.conversions_path, "SMSLEDGER_START_DATE": "2026-01-01",
           "SMSLEDGER_RATE_LIMIT_SCALE": str(DEMO_RATE_SCALE), "DAGSTER_HOME": str(settings.dagster_home),
           "SMSLEDGER_PII_KEY": KEY}
    sync = smsledger("sync", env=env, timeout=600)
    numbers = ({m["phone_e164"] for m in sim.state.truth_messages()} | {r["phone"] for r in sim.state.truth_replies()})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SMSLEDGER_PII_KEY", KEY)  # the in-process runs read it as the CLI does
        yield sim, settings, sync, forms_of(numbers), env
    sim.close()


def test_sync_with_a_key_leaves_no_number_in_the_marts_output_or_metadata(world):
    sim, settings, sync, numbers, env = world
    assert sync.returncode == 0, sync.stdout + sync.stderr
    output = sync.stdout + sync.stderr
    assert "built" in output and [n for n in numbers if n in output] == []
    events = events_text(settings)
    assert "records_found" in events and "dagster/row_count" in events  # the text scanned is the runs' metadata
    assert [n for n in numbers if n in events] == []
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert holding(con, ["staging"], numbers)  # where numbers are, the scan finds them
        assert holding(con, ["marts"], numbers) == []
        assert con.execute("select count(*), count(phone_token), count(phone_masked) from marts.message_status"
                           ).fetchone()[0] > 0
        # each token is the keyed hash of the message's number, the mask its ends
        staged = dict(con.execute("select serial_no, phone_e164 from staging.sends where phone_e164 is not null").fetchall())
        for serial, token, shown in con.execute("select serial_no, phone_token, phone_masked from marts.message_status "
                                                "where in_sends_log").fetchall():
            assert token == phone_token(KEY.encode(), staged[serial])
            assert shown == masked(staged[serial], str(phonenumbers.parse(staged[serial]).country_code))


def test_replies_are_attributed_as_without_a_key_on_the_same_traffic(world, tmp_path):
    sim, settings, sync, numbers, env = world
    assert sync.returncode == 0
    # the same raw and staging, its marts emptied and built again without a key (empty marts switch)
    plain = dataclasses.replace(settings, warehouse=tmp_path / "plain.duckdb", pii_key=None)
    shutil.copy(settings.warehouse, plain.warehouse)
    with duckdb.connect(str(plain.warehouse)) as con:
        con.execute("delete from marts.message_status")
        con.execute("delete from marts.replies")
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        first, last = con.execute("select min(reply_date), max(reply_date) from marts.replies").fetchone()
    run_days(plain, first - dt.timedelta(days=4), last, log=lambda _: None)
    attributed = ("select sms_sdk_app_id, reply_date, reply_time, reply_content, serial_no, is_opt_out "
                  f"from marts.replies where reply_date between '{first}' and '{last}' order by all")
    daily = "select day, iso_code, sign_name, template_id, replies, opt_outs from marts.conversion_daily order by all"
    with duckdb.connect(str(plain.warehouse), read_only=True) as without, \
            duckdb.connect(str(settings.warehouse), read_only=True) as with_key:
        assert "phone_e164" in [c for (c, *_) in without.execute("describe marts.replies").fetchall()]
        expected = without.execute(attributed).fetchall()
        assert sum(row[4] is not None for row in expected) >= 5  # replies that found their message
        assert with_key.execute(attributed).fetchall() == expected
        days = without.execute("select min(day), max(day) from marts.conversion_daily").fetchone()
        assert with_key.execute(daily.replace("order by all", f"where day between '{days[0]}' and '{days[1]}' "
                                              "order by all")).fetchall() == without.execute(daily).fetchall()

    # marts holding numbers, run with a key: refused in one line naming the variable, marts untouched
    refused = smsledger("backfill", "--start", str(last), "--end", str(last),
                        env={**env, "SMSLEDGER_WAREHOUSE": str(plain.warehouse)}, timeout=600)
    assert refused.returncode == 1
    assert "SMSLEDGER_PII_KEY is set, but this warehouse's marts hold phone numbers (built without a key)" in \
        refused.stderr.strip().splitlines()[-1], refused.stderr
    assert KEY not in refused.stdout + refused.stderr
    with duckdb.connect(str(plain.warehouse), read_only=True) as without:
        assert without.execute(attributed).fetchall() == expected


def test_after_the_purge_no_number_is_left_in_raw_staging_or_marts(world):
    sim, settings, sync, numbers, env = world
    assert sync.returncode == 0
    with duckdb.connect(str(settings.warehouse)) as con:
        assert holding(con, ["raw", "staging"], numbers)
        # every record arrived long ago (its arrival is what ages it)
        for table in ("raw.send_status", "staging.receipts", "raw.reply_status", "staging.replies"):
            con.execute(f"update {table} set pulled_at = pulled_at - interval 30 days")
        con.execute("update raw.quarantine set quarantined_at = quarantined_at - interval 30 days")
        con.execute("update raw.gap_fill_calls set called_at = called_at - interval 30 days")
        con.execute("update raw.sends set send_time = send_time - 30 * 86400")
        con.execute("update staging.sends set sent_at = sent_at - interval 30 days")
    purging = dataclasses.replace(settings, pii_retention_days=14)
    run_drain(purging, log=lambda _: None)
    event = instance(purging).get_latest_materialization_event(dg.AssetKey(["raw", "personal_data_purge"]))
    purged = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    assert purged["numbers_purged_staging_phone_tokens"] > 0 and purged["numbers_purged_staging_phone_numbers"] > 0
    with duckdb.connect(str(settings.warehouse), read_only=True) as con:
        assert holding(con, ["raw", "staging", "marts"], numbers) == []
        # the marts keep their tokens and masks
        assert con.execute("select count(*) = count(phone_token) from marts.message_status where in_sends_log"
                           ).fetchone() == (True,)
    assert [n for n in numbers if n in events_text(settings)] == []
