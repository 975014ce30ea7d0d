"""Which receipt is a message's final one: the latest by usable receive time; a receipt whose
time is unusable never displaces one with a usable time, except that a delivery is final."""

import datetime as dt
import zoneinfo

import pytest

from pipelines.days import DayRange
from pipelines.warehouse.marts import rebuild

DAY = dt.date(2026, 3, 2)
T = dt.datetime(2026, 3, 2, 9, tzinfo=dt.UTC)


def receipts(con, serial, *rows):
    """(status, seconds after T or None for an unusable time) per receipt."""
    for i, (status, offset) in enumerate(rows):
        con.execute(
            "insert into staging.receipts (send_date, serial_no, record_key, report_status, description, "
            "user_receive_time, receive_time_flag, pulled_at, sms_sdk_app_id) "
            "values ($day, $serial, $key, $status, $desc, $t, $flag, $p, '1400000000')",
            {"day": DAY, "serial": serial, "key": f"{serial}|{i}", "status": status,
             "desc": "DELIVRD" if status == "SUCCESS" else "UNDELIV",
             "t": None if offset is None else T + dt.timedelta(seconds=offset),
             "flag": "zero" if offset is None else None, "p": T + dt.timedelta(hours=1, seconds=i)},
        )


@pytest.mark.parametrize("rows, status, receive_offset", [
    ([("FAIL", 10), ("SUCCESS", 300)], "SUCCESS", 300),            # a successful retry
    ([("FAIL", 10), ("FAIL", 300)], "FAIL", 300),                  # the latest failure
    ([("FAIL", 10), ("SUCCESS", None)], "SUCCESS", None),          # a delivery whose time is unusable
    ([("FAIL", None), ("SUCCESS", 300)], "SUCCESS", 300),
    ([("FAIL", None), ("FAIL", 300)], "FAIL", 300),                # unusable never displaces usable
    ([("FAIL", 300), ("FAIL", None)], "FAIL", 300),
    ([("SUCCESS", 300), ("SUCCESS", None)], "SUCCESS", 300),       # the usable copy keeps its time
    ([("SUCCESS", None)], "SUCCESS", None),
])
def test_the_final_receipt(con, rows, status, receive_offset):
    receipts(con, "m1", *rows)
    rebuild(con, "marts.message_status", DayRange(DAY, DAY, zoneinfo.ZoneInfo("UTC")), attribution_days=7)
    got = con.execute("select report_status, user_receive_time, receipts from marts.message_status").fetchone()
    expected_time = None if receive_offset is None else T + dt.timedelta(seconds=receive_offset)
    assert got == (status, expected_time, len(rows))
