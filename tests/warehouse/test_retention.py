"""The personal-data purge on hand-made rows: a reply is (application, record_key), so two
applications holding the same key each get their own purged key; the normalized numbers and the
tokens of numbers just purged go when no younger row names them, and stay while one does."""

import datetime as dt

from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.retention import purge_personal_data

NOW = dt.datetime(2026, 3, 20, tzinfo=dt.UTC)
OLD, YOUNG = NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1)
CUTOFF = NOW - dt.timedelta(days=14)
GONE, KEPT = "+8613800000001", "+8613800000002"  # GONE: old rows only; KEPT: a young receipt too


def reply(con, app, batch, key, number, pulled_at, staged_app=...):
    con.execute("insert into raw.reply_status (record_key, phone_number, sign_name, reply_content, reply_time, "
                "batch_id, record_index, action, pulled_at, sms_sdk_app_id) values "
                "($k, $n, 'Acme', 'TD', 1, $b, 0, 'PullSmsReplyStatus', $t, $app)",
                {"k": key, "n": number, "b": batch, "t": pulled_at, "app": app})
    con.execute("insert into staging.replies (reply_date, record_key, phone_number, phone_e164, reply_content, "
                "pulled_at, sms_sdk_app_id) values ($d, $k, $n, $n, 'TD', $t, $app)",
                {"d": pulled_at.date(), "k": key, "n": number, "t": pulled_at, "app": app if staged_app is ... else staged_app})


def receipt(con, serial, number, pulled_at):
    con.execute("insert into raw.send_status (record_key, serial_no, phone_number, batch_id, record_index, action, "
                "pulled_at, sms_sdk_app_id) values ($s, $s, $n, 'b-r', 0, 'PullSmsSendStatus', $t, '1400000000')",
                {"s": serial, "n": number, "t": pulled_at})
    con.execute("insert into staging.receipts (send_date, serial_no, record_key, phone_number, phone_e164, pulled_at, "
                "sms_sdk_app_id) values ($d, $s, $s, $n, $n, $t, '1400000000')",
                {"d": pulled_at.date(), "s": serial, "n": number, "t": pulled_at})


def known(con, number):
    con.execute("insert into staging.phone_numbers (phone_number, normalizer, phone_e164) values ($n, 'x', $n)",
                {"n": number})
    con.execute("insert into staging.phone_tokens (phone_e164, key_id, phone_token) values ($n, 'k', 't')", {"n": number})


def test_two_applications_with_the_same_reply_key_each_get_their_own_purged_key(tmp_path):
    key = f"{GONE}|Acme|1|TD"
    with open_warehouse(tmp_path / "w.duckdb") as con:
        reply(con, "1400000000", "batch-a", key, GONE, OLD)
        reply(con, "1400000001", "batch-b", key, GONE, OLD)
        report = purge_personal_data(con, numbers_before=CUTOFF, texts_before=None)
        assert report.rows["raw.reply_status"] == 2 and report.rows["staging.replies"] == 2
        expected = [("1400000000", "purged|batch-a|0"), ("1400000001", "purged|batch-b|0")]
        for table in ("raw.reply_status", "staging.replies"):
            assert con.execute(f"select sms_sdk_app_id, record_key from {table} order by all").fetchall() == expected
        assert con.execute("select count(*) from staging.replies where phone_number is not null "
                           "or phone_e164 is not null").fetchone() == (0,)


def test_normalized_numbers_and_tokens_go_with_their_last_row_only(tmp_path):
    with open_warehouse(tmp_path / "w.duckdb") as con:
        receipt(con, "s-old-1", GONE, OLD)
        receipt(con, "s-old-2", KEPT, OLD)
        receipt(con, "s-young", KEPT, YOUNG)
        for number in (GONE, KEPT):
            known(con, number)
        report = purge_personal_data(con, numbers_before=CUTOFF, texts_before=None)
        assert report.rows["staging.phone_numbers"] == 1 and report.rows["staging.phone_tokens"] == 1
        for table in ("staging.phone_numbers", "staging.phone_tokens"):
            assert con.execute(f"select phone_e164 from {table}").fetchall() == [(KEPT,)]
        # nothing is counted twice; the young number goes once its own row is old
        again = purge_personal_data(con, numbers_before=CUTOFF, texts_before=None)
        assert again.total == 0
        later = purge_personal_data(con, numbers_before=NOW, texts_before=None)
        assert later.rows["staging.phone_numbers"] == 1 and later.rows["staging.phone_tokens"] == 1
        assert con.execute("select count(*) from staging.phone_numbers").fetchone() == (0,)


def test_a_reply_pushed_without_its_application_is_purged_in_staging_too(tmp_path):
    """With several applications a pushed reply is '' in raw (the push names none) and null in
    staging (unattributed): the purge still finds its staging row."""
    key = f"{GONE}|Acme|1|TD"
    with open_warehouse(tmp_path / "w.duckdb") as con:
        reply(con, "", "batch-push", key, GONE, OLD, staged_app=None)
        report = purge_personal_data(con, numbers_before=CUTOFF, texts_before=None)
        assert report.rows["raw.reply_status"] == 1 and report.rows["staging.replies"] == 1
        assert con.execute("select sms_sdk_app_id, record_key, phone_number, phone_e164 from staging.replies"
                           ).fetchall() == [(None, "purged|batch-push|0", None, None)]
