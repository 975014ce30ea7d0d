"""Opt-out detection on reply text as people type it: case, spaces and punctuation, ASCII or not."""

import datetime as dt
import zoneinfo

import pytest

from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.marts import rebuild
from pipelines.days import DayRange

WORDS = ["td", "t", "退订", "stop", "unsubscribe"]


@pytest.mark.parametrize(("content", "opt_out"), [
    ("TD", True), ("td", True), ("T", True), ("退订", True), ("退订。", True), ("退订！", True), (" STOP\n", True),
    ("Stop.", True), ("unsubscribe!", True), ("UNSUBSCRIBE", True), ("stop it", False), ("thanks", False),
    ("1", False), ("", False), (None, False),
])
def test_opt_out_words(tmp_path, content, opt_out):
    day = dt.date(2026, 11, 20)
    with open_warehouse(tmp_path / "w.duckdb") as con:
        con.execute("insert into staging.replies (reply_date, record_key, phone_e164, reply_content, reply_time) "
                    "values ($d, 'k', '+8618501234444', $c, $t)",
                    {"d": day, "c": content, "t": dt.datetime(2026, 11, 20, 8, tzinfo=dt.UTC)})
        rebuild(con, "marts.replies", DayRange(day, day, zoneinfo.ZoneInfo("UTC")), attribution_hours=72,
                opt_out_words=WORDS)
        assert con.execute("select is_opt_out from marts.replies").fetchone()[0] is opt_out
