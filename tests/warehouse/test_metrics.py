"""Daily metric marts: exact numbers from hand-made messages, replies and provider statistics."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.marts import rebuild
from pipelines.days import DayRange

UTC = ZoneInfo("UTC")
D1, D2, D3 = dt.date(2026, 1, 5), dt.date(2026, 1, 6), dt.date(2026, 1, 7)
NOON = dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC)

MESSAGE_COLUMNS = ("send_date", "serial_no", "iso_code", "sign_name", "template_id", "sent_at", "fee",
                   "report_status", "description", "user_receive_time", "latency_seconds", "converted_at",
                   "receipts", "in_sends_log", "sms_sdk_app_id")


APP = "1400000000"  # the first (and only) application


def message(serial, day=D1, iso="CN", sign="Acme", template="100", status=None, latency=None,
            converted_after=None, fee=1, description=None, logged=True, sent_at=None):
    """A marts.message_status row; `latency` and `converted_after` are seconds after sending."""
    sent = (sent_at or dt.datetime.combine(day, dt.time(12), dt.UTC)) if logged else None
    received = None
    if status is not None:
        received = sent + dt.timedelta(seconds=latency or 0) if logged else dt.datetime.combine(day, dt.time(13), dt.UTC)
    return {
        "send_date": day, "serial_no": serial, "iso_code": iso,
        "sign_name": sign if logged else None, "template_id": template if logged else None,
        "sent_at": sent, "fee": fee if logged else None, "report_status": status,
        "description": description or {"SUCCESS": "DELIVRD", "FAIL": "UNDELIV", None: None}[status],
        "user_receive_time": received,
        "latency_seconds": float(latency) if status is not None and logged and latency is not None else None,
        "converted_at": sent + dt.timedelta(seconds=converted_after) if converted_after is not None else None,
        "receipts": 0 if status is None else 1, "in_sends_log": logged, "sms_sdk_app_id": APP,
    }


# D1, group A (CN/Acme/100): 4 submitted, 2 delivered, 1 failed, 1 pending.
# D1, group B (US/Acme/200): 3 submitted, 2 delivered, 1 failed.
# D1, receipts of 2 messages missing from the sends log (CN, no sign/template).
# D2, group A: 1 delivered.
MESSAGES = [
    message("a1", status="SUCCESS", latency=10, converted_after=100),
    message("a2", status="SUCCESS", latency=20),
    message("a3", status="FAIL", latency=5, description="MK:0001"),
    message("a4", fee=2, converted_after=300),
    message("b1", iso="US", template="200", status="SUCCESS", latency=30, fee=3),
    message("b2", iso="US", template="200", status="FAIL", latency=8, description="MN:0017"),
    message("b3", iso="US", template="200", status="SUCCESS", latency=50, converted_after=60),
    message("o1", status="SUCCESS", logged=False),
    message("o2", status="FAIL", description="MK:0001", logged=False),
    message("a5", day=D2, status="SUCCESS", latency=40),
]

REPLY_COLUMNS = ("reply_date", "phone_e164", "reply_content", "reply_time", "serial_no", "is_opt_out", "record_key",
                 "sms_sdk_app_id")


def reply(key, serial, day, opt_out=False):
    return {"reply_date": day, "phone_e164": "+8613800000000", "reply_content": "TD" if opt_out else "ok",
            "reply_time": dt.datetime.combine(day, dt.time(18), dt.UTC), "serial_no": serial,
            "is_opt_out": opt_out, "record_key": key, "sms_sdk_app_id": APP}


REPLIES = [
    reply("r1", "a1", D1),
    reply("r2", "a1", D2, opt_out=True),   # a day later: still counts under a1's day
    reply("r3", "b1", D3),                 # two days later
    reply("r4", None, D1),                 # not attributed
    reply("r5", "a5", D2),
]

STAT_COLUMNS = ("provider_hour", "hour", "request_success_count", "callback_count", "callback_success_count",
                "callback_fail_count")


def hour_row(hour: dt.datetime, requested, callbacks, succeeded, failed):
    provider = hour.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d%H")
    return {"provider_hour": provider, "hour": hour, "request_success_count": requested, "callback_count": callbacks,
            "callback_success_count": succeeded, "callback_fail_count": failed}


def insert(con, table, columns, rows):
    names = ", ".join(columns)
    marks = ", ".join(f"${c}" for c in columns)
    for row in rows:
        con.execute(f"insert into {table} ({names}) values ({marks})", {c: row.get(c) for c in columns})


def insert_stats(con, rows):
    for row in rows:
        con.execute(
            "insert into raw.statistics_hourly (provider_hour, hour, fee_count, request_count, request_success_count, "
            "callback_count, callback_success_count, callback_fail_count, callback_request_success_count, "
            "internal_error_count, invalid_number_count, shutdown_error_count, blacklist_count, frequency_limit_count, "
            "pulled_at, sms_sdk_app_id) values ($provider_hour, $hour, $requested, $requested, $requested, $callbacks, "
            "$succeeded, $failed, $requested, 0, 0, 0, $failed, 0, $hour, $app)",
            {"provider_hour": row["provider_hour"], "hour": row["hour"], "requested": row["request_success_count"],
             "callbacks": row["callback_count"], "succeeded": row["callback_success_count"],
             "failed": row["callback_fail_count"], "app": APP},
        )


@pytest.fixture
def con(con):
    """The shared new warehouse, with the hand-made messages and replies of this module."""
    insert(con, "marts.message_status", MESSAGE_COLUMNS, MESSAGES)
    insert(con, "marts.replies", REPLY_COLUMNS, REPLIES)
    return con


def rows(con, sql, params=None):
    cursor = con.execute(sql, params or {})
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def days(first, last=None, tz=UTC):
    return DayRange(first, last or first, tz)


def test_delivery_daily_counts_and_rates_come_from_each_groups_counts(con):
    assert rebuild(con, "marts.delivery_daily", days(D1, D2)) == 4
    got = {(r["day"], r["iso_code"], r["template_id"]): r for r in rows(
        con, "select * exclude (sign_name) from marts.delivery_daily")}

    a = got[(D1, "CN", "100")]
    assert (a["submitted"], a["receipts"], a["delivered"], a["failed"], a["pending"]) == (4, 3, 2, 1, 1)
    assert a["pending"] == a["submitted"] - a["receipts"]
    assert a["delivery_rate"] == 0.5
    assert a["delivered_of_receipts"] == pytest.approx(2 / 3)
    assert a["receipt_coverage"] == 0.75
    assert (a["latency_p50_s"], a["latency_p95_s"]) == (15.0, 19.5)  # over delivered only: 10 and 20
    assert a["fee"] == 5

    b = got[(D1, "US", "200")]
    assert (b["submitted"], b["receipts"], b["delivered"], b["failed"], b["pending"]) == (3, 3, 2, 1, 0)
    assert b["delivery_rate"] == pytest.approx(2 / 3)
    assert b["receipt_coverage"] == 1.0
    assert (b["latency_p50_s"], b["latency_p95_s"]) == (40.0, 49.0)

    # Known only by their receipts: what was submitted is unknown.
    o = got[(D1, "CN", None)]
    assert (o["submitted"], o["receipts"], o["delivered"], o["failed"], o["pending"]) == (None, 2, 1, 1, None)
    assert (o["delivery_rate"], o["receipt_coverage"], o["delivered_of_receipts"]) == (None, None, 0.5)
    assert (o["latency_p50_s"], o["fee"]) == (None, None)

    assert got[(D2, "CN", "100")]["delivery_rate"] == 1.0

    # The day's rate is delivered / submitted over the groups (4 / 7), not the mean of the rates.
    (day_rate,) = con.execute(
        "select sum(delivered) filter (submitted is not null) / sum(submitted) from marts.delivery_daily "
        "where day = $d", {"d": D1}).fetchone()
    assert day_rate == pytest.approx(4 / 7)
    assert day_rate != pytest.approx((0.5 + 2 / 3) / 2)


def test_delivery_daily_column_types(con):
    rebuild(con, "marts.delivery_daily", days(D1))
    types = dict(con.execute("select column_name, data_type from information_schema.columns "
                             "where table_schema = 'marts' and table_name = 'delivery_daily'").fetchall())
    assert {types[c] for c in ("submitted", "receipts", "delivered", "failed", "pending", "fee")} == {"BIGINT"}
    assert {types[c] for c in ("delivery_rate", "delivered_of_receipts", "receipt_coverage",
                               "latency_p50_s", "latency_p95_s")} == {"DOUBLE"}
    assert types["day"] == "DATE"


def test_conversion_daily_counts_replies_under_the_day_of_the_message_they_answer(con):
    assert rebuild(con, "marts.conversion_daily", days(D1, D2)) == 4
    got = {(r["day"], r["iso_code"], r["template_id"]): r for r in rows(con, "select * from marts.conversion_daily")}

    a = got[(D1, "CN", "100")]
    # a1 (delivered) and a4 (still pending) converted; two delivered.
    assert (a["delivered"], a["conversions"], a["conversion_rate"]) == (2, 2, 1.0)
    assert a["median_time_to_convert_s"] == 200.0
    # r1 (same day) and r2 (next day, an opt-out) both answer a1.
    assert (a["replies"], a["reply_rate"], a["opt_outs"]) == (2, 1.0, 1)

    b = got[(D1, "US", "200")]
    assert (b["delivered"], b["conversions"], b["conversion_rate"], b["median_time_to_convert_s"]) == (2, 1, 0.5, 60.0)
    assert (b["replies"], b["reply_rate"], b["opt_outs"]) == (1, 0.5, 0)  # r3, two days after b1's day

    o = got[(D1, "CN", None)]
    assert (o["delivered"], o["conversions"], o["conversion_rate"], o["replies"], o["reply_rate"]) == (1, 0, 0.0, 0, 0.0)
    assert o["median_time_to_convert_s"] is None

    assert (got[(D2, "CN", "100")]["replies"], got[(D2, "CN", "100")]["opt_outs"]) == (1, 0)
    # The unattributed reply r4 counts nowhere.
    assert con.execute("select sum(replies) from marts.conversion_daily").fetchone() == (4,)


def test_failure_reasons_daily(con):
    assert rebuild(con, "marts.failure_reasons_daily", days(D1, D2)) == 2
    got = con.execute("select day, iso_code, description, failed from marts.failure_reasons_daily "
                      "order by iso_code").fetchall()
    assert got == [(D1, "CN", "MK:0001", 2), (D1, "US", "MN:0017", 1)]


def test_provider_statistics_hourly_takes_the_utc_hours_of_the_partition_days(con):
    shanghai = ZoneInfo("Asia/Shanghai")
    # The Shanghai day 2026-01-06 is [2026-01-05 16:00, 2026-01-06 16:00) UTC.
    hours = [dt.datetime(2026, 1, 5, 15, tzinfo=dt.UTC), dt.datetime(2026, 1, 5, 16, tzinfo=dt.UTC),
             dt.datetime(2026, 1, 6, 15, tzinfo=dt.UTC), dt.datetime(2026, 1, 6, 16, tzinfo=dt.UTC)]
    insert_stats(con, [hour_row(h, i + 1, i + 1, i + 1, 0) for i, h in enumerate(hours)])
    # The session's zone must not move the slice.
    con.execute("set time zone 'America/Los_Angeles'")
    assert rebuild(con, "marts.provider_statistics_hourly", days(D1, tz=shanghai), timezone="Asia/Shanghai") == 1
    assert rebuild(con, "marts.provider_statistics_hourly", days(D3, tz=shanghai), timezone="Asia/Shanghai") == 1
    assert rebuild(con, "marts.provider_statistics_hourly", days(D2, tz=shanghai), timezone="Asia/Shanghai") == 2
    con.execute("set time zone 'UTC'")
    got = con.execute("select hour, day, provider_hour, request_success_count, callback_request_success_count, "
                      "blacklist_count from marts.provider_statistics_hourly order by hour").fetchall()
    assert got == [
        (hours[0], D1, "2026010523", 1, 1, 0),
        (hours[1], D2, "2026010600", 2, 2, 0),
        (hours[2], D2, "2026010623", 3, 3, 0),
        (hours[3], D3, "2026010700", 4, 4, 0),
    ]
    # Rewriting the middle day again replaces exactly its two hours.
    assert rebuild(con, "marts.provider_statistics_hourly", days(D2, tz=shanghai), timezone="Asia/Shanghai") == 2
    assert con.execute("select count(*) from marts.provider_statistics_hourly").fetchone() == (4,)


def test_reconciliation_daily_puts_our_counts_beside_the_providers(con):
    # D1: ours are submitted 7, receipts 8 (6 logged + 2 known only by receipt), delivered 5, failed 3.
    insert_stats(con, [
        hour_row(dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC), 5, 6, 4, 2),
        hour_row(dt.datetime(2026, 1, 5, 12, tzinfo=dt.UTC), 2, 1, 0, 1),
        hour_row(dt.datetime(2026, 1, 7, 9, tzinfo=dt.UTC), 0, 0, 0, 0),
    ])
    rebuild(con, "marts.provider_statistics_hourly", days(D1, D3), timezone="UTC")
    assert rebuild(con, "marts.reconciliation_daily", days(D1, D3)) == 3
    got = {r["day"]: r for r in rows(con, "select * from marts.reconciliation_daily")}

    d1 = got[D1]
    assert d1["has_sends_log"] is True
    assert (d1["submitted"], d1["provider_request_success_count"], d1["submitted_diff"]) == (7, 7, 0)
    assert (d1["receipts"], d1["provider_callback_count"], d1["receipts_diff"]) == (8, 7, 1)
    assert (d1["delivered"], d1["provider_callback_success_count"], d1["delivered_diff"]) == (5, 4, 1)
    assert (d1["failed"], d1["provider_callback_fail_count"], d1["failed_diff"]) == (3, 3, 0)
    assert d1["delivery_rate"] == pytest.approx(4 / 7)  # ours: sends-log groups only
    assert d1["provider_delivery_rate"] == pytest.approx(4 / 7)
    assert d1["provider_hours"] == 2

    # D2: no provider statistics: the provider's side and the differences are unknown.
    d2 = got[D2]
    assert (d2["submitted"], d2["receipts"], d2["delivered"], d2["failed"]) == (1, 1, 1, 0)
    assert (d2["provider_hours"], d2["provider_request_success_count"], d2["submitted_diff"],
            d2["receipts_diff"], d2["provider_delivery_rate"]) == (0, None, None, None, None)

    # D3: no messages at all, statistics of zero: nothing from a sends log, so nothing comparable.
    d3 = got[D3]
    assert (d3["has_sends_log"], d3["submitted"], d3["submitted_diff"]) == (False, None, None)
    assert (d3["receipts"], d3["receipts_diff"], d3["failed_diff"], d3["provider_delivery_rate"]) == (0, None, None, None)


def test_reconciliation_without_a_sends_log_compares_nothing(tmp_path):
    """Without a sends log messages are placed by their receipt's day, the provider's by send
    hour: the counts stand beside each other, their differences are null (not comparable)."""
    with open_warehouse(tmp_path / "w.duckdb") as con:
        insert(con, "marts.message_status", MESSAGE_COLUMNS,
               [message("o1", status="SUCCESS", logged=False), message("o2", status="FAIL", logged=False)])
        insert_stats(con, [hour_row(dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC), 3, 2, 1, 1)])
        rebuild(con, "marts.provider_statistics_hourly", days(D1), timezone="UTC")
        rebuild(con, "marts.reconciliation_daily", days(D1))
        got = rows(con, "select * from marts.reconciliation_daily")[0]
    assert (got["has_sends_log"], got["submitted"], got["submitted_diff"], got["delivery_rate"]) == (False, None, None, None)
    assert (got["receipts"], got["provider_callback_count"]) == (2, 2)
    assert (got["receipts_diff"], got["delivered_diff"], got["failed_diff"]) == (None, None, None)
    # The app-level delivery rate stands in from the provider.
    assert got["provider_delivery_rate"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("table", ["marts.delivery_daily", "marts.conversion_daily", "marts.failure_reasons_daily",
                                   "marts.reconciliation_daily"])
def test_rebuilding_replaces_the_slice_and_only_it(con, table):
    insert_stats(con, [hour_row(dt.datetime(2026, 1, 5, 9, tzinfo=dt.UTC), 7, 8, 5, 3)])
    rebuild(con, "marts.provider_statistics_hourly", days(D1, D2), timezone="UTC")
    rebuild(con, table, days(D1, D2))
    first = sorted(con.execute(f"select * from {table}").fetchall(), key=repr)
    rebuild(con, table, days(D1, D2))
    assert sorted(con.execute(f"select * from {table}").fetchall(), key=repr) == first

    # Rebuilding D2 alone after its messages changed leaves D1 as it was.
    con.execute("update marts.message_status set report_status = 'FAIL', description = 'X' where send_date = $d",
                {"d": D2})
    before_d1 = sorted(con.execute(f"select * from {table} where day = $d", {"d": D1}).fetchall(), key=repr)
    rebuild(con, table, days(D2))
    assert sorted(con.execute(f"select * from {table} where day = $d", {"d": D1}).fetchall(), key=repr) == before_d1
    assert sorted(con.execute(f"select * from {table}").fetchall(), key=repr) != first
