"""Several applications (SMSLEDGER_SDK_APP_ID=a,b,...) through the Dagster jobs against a
simulator of two: each application's queues drained into rows that name it, its statistics stored
per hour beside the other's, and one application id the provider refuses reported by id without
stopping the others. Compared with the simulator's ground truth per application. Spend: the price
table (SMSLEDGER_PRICES) loaded, or refused naming its line before anything is drained; the fee of
the sends log reconciled with the provider's FeeCount per day and application."""

import datetime as dt
from decimal import Decimal

import duckdb
import pytest
from support import expected_delivery, pipeline_settings, query, smsledger, start

from pipelines.app.demo import DEMO_RATE_SCALE
from pipelines.app.runner import run_days, run_drain
from pipelines.simulator.state import receipt_fields, reply_fields

APPS = ("1400000000", "1400000111")
NOT_OURS = "1400000999"  # an id the account does not own: the provider refuses it
END = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
DAYS = 2
PRICES = ("region,message_type,unit_price,currency,valid_from\n"
          "CN,mainland,0.045,CNY,2026-01-01\nCN,mainland,0.04,CNY,2026-11-19\nID,international,0.35,CNY,2026-01-01\n")


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    root = tmp_path_factory.mktemp("applications")
    sim = start(sdk_app_ids=APPS, messages_per_day=400, days=DAYS, now=END.timestamp(), out_dir=root / "sim",
                rate_scale=DEMO_RATE_SCALE)  # the pipeline's settings are the demo's
    first = (END - dt.timedelta(days=DAYS)).date()
    last = (END - dt.timedelta(days=1)).date()
    prices = root / "prices.csv"
    prices.write_text(PRICES)
    settings = pipeline_settings(root, sim, first, sdk_app_ids=(*APPS, NOT_OURS), prices_path=prices)
    lines = []
    drained = run_drain(settings, log=lines.append)
    built = run_days(settings, first, last, log=lines.append)
    yield sim, settings, drained, built, lines
    sim.close()


def test_each_application_s_records_name_it(synced):
    sim, settings, _, _, _ = synced
    for app in APPS:
        receipts = [receipt_fields(r) for r in sim.state.due_receipts(sdk_app_id=app)]
        assert receipts
        stored = query(settings.warehouse, "select distinct serial_no from raw.send_status where sms_sdk_app_id = $app",
                       {"app": app})
        assert {s for (s,) in stored} == {r["SerialNo"] for r in receipts if r["SerialNo"]}
        replies = [reply_fields(r) for r in sim.state.due_replies(sdk_app_id=app)]
        stored = query(settings.warehouse, "select distinct reply_time, reply_content from raw.reply_status "
                                           "where sms_sdk_app_id = $app", {"app": app})
        assert set(stored) == {(r["ReplyTime"], r["ReplyContent"]) for r in replies if r["PhoneNumber"]}
    # every row names an application we configured, and no record is in two
    assert query(settings.warehouse, "select distinct sms_sdk_app_id from raw.send_status order by 1") == [
        (app,) for app in APPS]
    assert query(settings.warehouse, "select count(*) from (select serial_no from raw.send_status "
                                     "group by serial_no having count(distinct sms_sdk_app_id) > 1)") == [(0,)]
    # every spooled batch says its application
    assert query(settings.warehouse, "select count(*) from raw.batches where sms_sdk_app_id is null") == [(0,)]


def test_the_refused_application_is_named_and_the_others_go_on(synced):
    _, _, drained, built, lines = synced
    assert any(NOT_OURS in line and "SmsSdkAppIdVerifyFail" in line and "queue_drained" in line
               for line in drained.errors), drained.errors
    assert not any(app in line for line in drained.errors for app in APPS)
    assert any("of 3 applications" in line for line in lines)
    assert f"  application {NOT_OURS}: receipts refused (UnauthorizedOperation.SmsSdkAppIdVerifyFail), replies refused " \
           "(UnauthorizedOperation.SmsSdkAppIdVerifyFail)" in lines
    assert any(line.startswith(f"  application {APPS[1]}: ") and "receipts refused" not in line for line in lines)
    assert any(NOT_OURS in line and "statistics_complete" in line for line in built.warnings), built.warnings


def test_statistics_per_application_match_the_provider(synced):
    sim, settings, _, _, _ = synced
    import httpx

    api_hours = query(settings.warehouse, "select sms_sdk_app_id, min(provider_hour), max(provider_hour), count(*), "
                                          "sum(request_count), sum(callback_count) from raw.statistics_hourly "
                                          "group by all order by 1")
    assert [row[0] for row in api_hours] == list(APPS)
    for app, begin, end, hours, requests, callbacks in api_hours:
        assert hours == 24 * DAYS  # every hour of the days
        truth = httpx.get(f"{sim.url}/_sim/truth/statistics", params={"begin": begin, "end": end, "app": app},
                          trust_env=False).json()
        assert (requests, callbacks) == (truth["SendStatusStatistics"]["RequestCount"],
                                         truth["CallbackStatusStatistics"]["CallbackCount"])
    assert api_hours[0][4] != api_hours[1][4]  # two applications, two volumes


def test_the_marts_are_per_application_and_match_the_truth(synced):
    sim, settings, _, built, _ = synced
    first, last = (END - dt.timedelta(days=DAYS)).date(), (END - dt.timedelta(days=1)).date()
    for app in APPS:
        ours = query(settings.warehouse, "select day, iso_code, sum(submitted), sum(delivered), sum(failed), sum(pending) "
                                         "from marts.delivery_daily where sms_sdk_app_id = $app group by all", {"app": app})
        truth = expected_delivery(sim, app, first, last)
        assert truth and {(day, iso): tuple(int(v) for v in row) for day, iso, *row in ours} == truth
    # a message, a day's group and a reply each belong to one application
    assert query(settings.warehouse, "select distinct sms_sdk_app_id from marts.message_status order by 1") == [
        (app,) for app in APPS]
    assert query(settings.warehouse, "select count(*) from marts.message_status m join raw.send_status r "
                                     "using (serial_no) where m.sms_sdk_app_id <> r.sms_sdk_app_id") == [(0,)]
    assert query(settings.warehouse, "select count(*) from marts.replies r join marts.message_status m "
                                     "using (sms_sdk_app_id, serial_no)") == query(
        settings.warehouse, "select count(serial_no) from marts.replies")
    # each application reconciled against its own statistics, exactly
    recon = query(settings.warehouse, "select sms_sdk_app_id, count(*), sum(abs(submitted_diff) + abs(receipts_diff) "
                                      "+ abs(delivered_diff) + abs(failed_diff)), sum(provider_hours) "
                                      "from marts.reconciliation_daily group by 1 order by 1")
    assert recon == [(app, DAYS, 0, 24 * DAYS) for app in APPS]
    assert query(settings.warehouse, "select sms_sdk_app_id, count(*) from marts.provider_statistics_hourly "
                                     "group by 1 order by 1") == [(app, 24 * DAYS) for app in APPS]
    assert not [line for line in built.errors + built.warnings if "matches_provider_statistics" in line]


def test_the_price_table_is_loaded(synced):
    _, settings, _, _, _ = synced
    assert query(settings.warehouse, "select region, message_type, unit_price::varchar, currency, valid_from::varchar "
                                     "from raw.prices order by all") == [
        ("CN", "mainland", "0.040000", "CNY", "2026-11-19"), ("CN", "mainland", "0.045000", "CNY", "2026-01-01"),
        ("ID", "international", "0.350000", "CNY", "2026-01-01")]


# The unit prices of PRICES by region and send day, worked out by hand: CN's changes on 2026-11-19.
HAND_PRICES = {("CN", dt.date(2026, 11, 18)): Decimal("0.045"), ("CN", dt.date(2026, 11, 19)): Decimal("0.04"),
               ("ID", dt.date(2026, 11, 18)): Decimal("0.35"), ("ID", dt.date(2026, 11, 19)): Decimal("0.35")}


def test_spend_per_application_is_fee_times_the_price_of_the_day(synced):
    sim, settings, _, _, _ = synced
    first, last = (END - dt.timedelta(days=DAYS)).date(), (END - dt.timedelta(days=1)).date()
    priced = 0
    for app in APPS:
        expected: dict[tuple, list] = {}
        for m in sim.state.truth_messages(sdk_app_id=app):
            day = dt.datetime.fromtimestamp(m["send_time"], dt.UTC).date()
            if m["code"] == "Ok" and first <= day <= last:
                row = expected.setdefault((day, m["iso_code"]), [0, 0])
                row[0] += 1
                row[1] += m["fee"]
        expected = {(day, iso): (n, fee, None if (iso, day) not in HAND_PRICES else fee * HAND_PRICES[iso, day],
                                 "CNY" if (iso, day) in HAND_PRICES else None)
                    for (day, iso), (n, fee) in expected.items()}
        spend = query(settings.warehouse, "select day, iso_code, sum(messages)::bigint, sum(fee)::bigint, sum(cost), "
                                          "min(currency) from marts.spend_daily where sms_sdk_app_id = $app group by all",
                      {"app": app})
        assert {(day, iso): tuple(row) for day, iso, *row in spend} == expected
        delivery = query(settings.warehouse, "select day, iso_code, sum(fee)::bigint, sum(cost) from marts.delivery_daily "
                                             "where sms_sdk_app_id = $app and submitted is not null group by all",
                         {"app": app})
        assert {(day, iso): (fee, cost) for day, iso, fee, cost in delivery} == {
            key: (fee, cost) for key, (_, fee, cost, _) in expected.items()}
        priced += sum(1 for _, _, cost, _ in expected.values() if cost)
    assert priced >= 2 * len(APPS)  # CN and ID, both days
    # a message without a price row (another region) or without a fee (not in the sends log) costs null
    assert query(settings.warehouse, "select count(*) from marts.message_status where cost is not null "
                                     "and (iso_code not in ('CN', 'ID') or fee is null)") == [(0,)]


def test_fee_is_reconciled_with_the_provider_per_day_and_application(synced):
    sim, settings, _, built, _ = synced
    assert not [line for line in built.errors + built.warnings if "fee_matches_provider" in line]
    # the sends log's fee of one application, one day, made to differ: that day fails, naming it
    first = (END - dt.timedelta(days=DAYS)).date()
    con = duckdb.connect(str(settings.warehouse))
    con.execute("update raw.sends set fee = fee + 1 where serial_no = (select min(serial_no) from raw.sends "
                "where sms_sdk_app_id = $app and code = 'Ok' and to_timestamp(send_time)::date = $day)",
                {"app": APPS[1], "day": first})
    con.close()
    again = run_days(settings, first, first, log=lambda _: None)
    fee_lines = [line for line in again.errors + again.warnings if "fee_matches_provider" in line]
    assert len(fee_lines) == 1 and f"application {APPS[1]}: fee ours" in fee_lines[0] and "(+1)" in fee_lines[0]
    assert APPS[0] not in fee_lines[0]


def test_a_price_table_that_does_not_parse_is_refused_before_anything_is_drained(synced, tmp_path):
    sim, settings, _, _, _ = synced
    bad = tmp_path / "prices.csv"
    bad.write_text(PRICES + "ID,international,free,CNY,2026-01-01\n")
    requests = sum(sim.service.stats.requests.values())
    done = smsledger("sync", env={"SMSLEDGER_ENDPOINT": sim.url, "SMSLEDGER_PRICES": str(bad),
                                  "SMSLEDGER_WAREHOUSE": str(tmp_path / "w.duckdb"),
                                  "SMSLEDGER_SPOOL_DIR": str(tmp_path / "spool"), "SMSLEDGER_START_DATE": "2026-11-01"})
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"smsledger sync: SMSLEDGER_PRICES={bad}: line 5: unit_price 'free' is not a price (a decimal of 0 or more)")
    assert sum(sim.service.stats.requests.values()) == requests
