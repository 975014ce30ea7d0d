"""Phone numbers in the marts (SMSLEDGER_PII_KEY): without a key marts.message_status and
marts.replies hold `phone_e164`; with one they hold the number's keyed token and masked form, the
reply's record key is replaced by its token, a reply still finds the message it answers, and no
text column holds the number. A warehouse whose marts hold rows of the other mode, or tokens of
another key, is refused in one line naming the variable; empty marts switch."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from pipelines.days import DayRange
from pipelines.normalize.pii import key_id, phone_token
from pipelines.warehouse import marts as M
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.marts import PhoneModeError, rebuild

KEY = "a-test-key-of-32-characters-0000"
DAY = dt.date(2026, 3, 2)
DAYS = DayRange(DAY, DAY, ZoneInfo("UTC"))
APP, OTHER_APP = "1400000000", "1400000001"
NUMBER, NATIONAL = "+8613812345678", "13812345678"
REPLY_KEY = f"{NUMBER}|Acme|1772452800|TD"
REPLY_PARAMS = {"attribution_hours": 72, "opt_out_words": ["td", "stop"]}


def stage(con, number=NUMBER):
    """A delivered message to `number` of each application, and its reply to the first one."""
    sent = dt.datetime(2026, 3, 2, 10, tzinfo=dt.UTC)
    for app, serial in ((APP, "s-1"), (OTHER_APP, "s-2")):
        con.execute("insert into staging.sends (send_date, serial_no, phone_number, phone_e164, country_code, "
                    "iso_code, sign_name, sent_at, fee, code, sms_sdk_app_id) values "
                    "($d, $s, $n, $n, '86', 'CN', 'Acme', $t, 1, 'Ok', $app)",
                    {"d": DAY, "s": serial, "n": number, "t": sent, "app": app})
        con.execute("insert into staging.receipts (send_date, serial_no, record_key, phone_number, phone_e164, "
                    "country_code, iso_code, report_status, user_receive_time, pulled_at, sms_sdk_app_id) values "
                    "($d, $s, $s || '|SUCCESS', $n, $n, '86', 'CN', 'SUCCESS', $t, $t, $app)",
                    {"d": DAY, "s": serial, "n": number, "t": sent + dt.timedelta(seconds=5), "app": app})
    con.execute("insert into staging.replies (reply_date, record_key, phone_number, phone_e164, country_code, iso_code, "
                "sign_name, reply_content, reply_time, pulled_at, sms_sdk_app_id) values "
                "($d, $k, $n, $n, '86', 'CN', 'Acme', 'TD', $t, $t, $app)",
                {"d": DAY, "k": REPLY_KEY.replace(NUMBER, number), "n": number,
                 "t": sent + dt.timedelta(hours=2), "app": APP})


def build(con, key=None):
    rebuild(con, "marts.message_status", DAYS, pii_key=key, attribution_days=7)
    rebuild(con, "marts.replies", DAYS, pii_key=key, **REPLY_PARAMS)


def columns(con, table):
    return [name for (name,) in con.execute(
        "select column_name from duckdb_columns() where database_name = current_database() and "
        "schema_name || '.' || table_name = $t order by column_index", {"t": table}).fetchall()]


def text_columns_holding(con, schema, text):
    """table.column of every text column of `schema` with a value containing `text`."""
    found = []
    for table, column in con.execute(
            "select table_name, column_name from duckdb_columns() where database_name = current_database() "
            "and schema_name = $s and data_type = 'VARCHAR'", {"s": schema}).fetchall():
        if con.execute(f"select count(*) from {schema}.{table} where contains({column}, $x)", {"x": text}).fetchone()[0]:
            found.append(f"{table}.{column}")
    return found


def test_without_a_key_the_marts_hold_numbers_as_before(tmp_path):
    with open_warehouse(tmp_path / "w.duckdb") as con:
        stage(con)
        build(con)
        assert "phone_e164" in columns(con, "marts.message_status") and "phone_token" not in columns(con, "marts.replies")
        assert con.execute("select phone_e164, serial_no, record_key from marts.replies").fetchone() == (
            NUMBER, "s-1", REPLY_KEY)
        assert con.execute("select count(*) from marts.phone_token_key").fetchone() == (0,)


def test_with_a_key_the_marts_hold_tokens_and_masks_and_no_number(tmp_path):
    key = KEY.encode()
    with open_warehouse(tmp_path / "w.duckdb") as con:
        stage(con)
        build(con, KEY)
        for table in M.PHONE_MARTS:
            assert "phone_e164" not in columns(con, table)
            assert columns(con, table)[-2:] == ["phone_token", "phone_masked"]
        assert con.execute("select distinct phone_token, phone_masked from marts.message_status").fetchall() == [
            (phone_token(key, NUMBER), "+86138****5678")]
        # the reply finds its message (of its own application) through the token
        assert con.execute("select phone_token, phone_masked, serial_no, is_opt_out, record_key from marts.replies"
                           ).fetchone() == (phone_token(key, NUMBER), "+86138****5678", "s-1", True,
                                            phone_token(key, REPLY_KEY))
        assert text_columns_holding(con, "marts", NATIONAL) == []
        assert con.execute("select key_id from marts.phone_token_key").fetchall() == [(key_id(key),)]
        # each number's token once, and a rebuild computes none again
        assert con.execute("select count(*) from staging.phone_tokens").fetchone() == (1,)
        build(con, KEY)
        assert con.execute("select count(*) from staging.phone_tokens").fetchone() == (1,)
        assert con.execute("select count(*) from marts.replies where serial_no = 's-1'").fetchone() == (1,)


def test_tokens_are_made_in_chunks_each_number_once(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "TOKEN_CHUNK", 2)
    with open_warehouse(tmp_path / "w.duckdb") as con:
        for n in range(5):
            stage(con, number=f"+86138000000{n:02d}")
        build(con, KEY)
        assert con.execute("select count(*), count(distinct phone_e164) from staging.phone_tokens").fetchone() == (5, 5)
        assert con.execute("select count(*), count(distinct phone_token) from marts.message_status").fetchone() == (10, 5)
        assert con.execute("select count(*) from marts.replies where serial_no is not null").fetchone() == (5,)


@pytest.mark.parametrize("first, then, message", [
    (None, KEY, "SMSLEDGER_PII_KEY is set, but this warehouse's marts hold phone numbers (built without a key): "),
    (KEY, None, "SMSLEDGER_PII_KEY is unset, but this warehouse's marts hold tokens of a key instead of phone numbers: "),
    (KEY, "another-key-of-more-than-16", "SMSLEDGER_PII_KEY is not the key this warehouse's marts were built with "),
])
def test_marts_of_another_mode_or_key_are_refused_in_one_line_and_left_alone(tmp_path, first, then, message):
    with open_warehouse(tmp_path / "w.duckdb") as con:
        stage(con)
        build(con, first)
        before = {table: (columns(con, table), con.execute(f"select * from {table}").fetchall()) for table in M.PHONE_MARTS}
        for table in M.PHONE_MARTS:
            with pytest.raises(PhoneModeError) as info:
                rebuild(con, table, DAYS, pii_key=then, **({"attribution_days": 7} if table.endswith("status") else REPLY_PARAMS))
            assert str(info.value).startswith(message) and "\n" not in str(info.value)
            for secret in (KEY, "another-key-of-more-than-16", NATIONAL):
                assert secret not in str(info.value)
        assert {table: (columns(con, table), con.execute(f"select * from {table}").fetchall())
                for table in M.PHONE_MARTS} == before


def test_empty_marts_switch_either_way(tmp_path):
    with open_warehouse(tmp_path / "w.duckdb") as con:
        stage(con)
        build(con, KEY)
        for table in M.PHONE_MARTS:
            con.execute(f"delete from {table}")
        build(con)  # back to numbers
        assert con.execute("select phone_e164, serial_no from marts.replies").fetchone() == (NUMBER, "s-1")
        assert con.execute("select count(*) from marts.phone_token_key").fetchone() == (0,)
        for table in M.PHONE_MARTS:
            con.execute(f"delete from {table}")
        build(con, "another-key-of-more-than-16")
        assert con.execute("select phone_token from marts.replies").fetchone() == (
            phone_token(b"another-key-of-more-than-16", NUMBER),)
        assert con.execute("select distinct key_id from staging.phone_tokens").fetchall() == [
            (key_id(b"another-key-of-more-than-16"),)]
