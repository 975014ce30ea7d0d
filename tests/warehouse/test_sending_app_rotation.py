"""Rows once loaded stay: raw.sends and raw.conversions are insert-only, one row per record key, so
a log rewritten in place (copytruncate), rotated into a copy, edited or read again never deletes
nor duplicates a row; a file that only grew is read from where the last read ended."""

import os

import duckdb
import orjson

from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.sending_app import load_source_files
from sending_app_files import (
    SEND_FIELDS, count, csv_text, failed_send, keys_loaded_twice, ndjson, send, serials, settle, write_ndjson,
)


def serial(n: int) -> str:
    return send(n)["SerialNo"]


def test_a_log_rewritten_in_place_keeps_the_rows_loaded_from_it(con, tmp_path):
    path = tmp_path / "sends.log.ndjson"
    path.write_bytes(ndjson(send(n) for n in range(10)))
    assert load_source_files(con, "sends", str(path)).rows == 10
    with path.open("ab") as log:
        log.write(ndjson(send(n) for n in range(10, 15)))
    grown = load_source_files(con, "sends", str(path))
    assert (grown.rows, grown.records, count(con, "raw.sends")) == (5, 5, 15)

    # copytruncate: the logger's file is copied away, then cut to nothing and written again.
    with path.open("r+b") as log:
        log.truncate(0)
        log.write(ndjson(send(n) for n in range(15, 18)))
    rewritten = load_source_files(con, "sends", str(path))

    assert (rewritten.rows, rewritten.records, rewritten.problems) == (3, 3, [])
    assert serials(con) == [serial(n) for n in range(18)]
    assert load_source_files(con, "sends", str(path)).unchanged_files == 1
    with path.open("ab") as log:
        log.write(ndjson([send(18)]))
    assert (load_source_files(con, "sends", str(path)).records, count(con, "raw.sends")) == (1, 19)


def test_a_rotated_copy_adds_nothing_already_loaded(con, tmp_path):
    live = tmp_path / "sends.ndjson"
    live.write_bytes(ndjson(send(n) for n in range(15)))
    load_source_files(con, "sends", str(tmp_path / "sends.ndjson*"))
    (tmp_path / "sends.ndjson.1").write_bytes(live.read_bytes())
    live.write_bytes(ndjson(send(n) for n in range(15, 18)))

    report = load_source_files(con, "sends", str(tmp_path / "sends.ndjson*"))

    assert (report.files, report.loaded_files, report.rows, report.duplicates) == (2, 2, 3, 15)
    assert sorted(serials(con)) == sorted(serial(n) for n in range(18))
    assert keys_loaded_twice(con) == []


def test_an_edited_file_is_read_whole_and_adds_only_new_records(con, tmp_path):
    path = tmp_path / "sends.ndjson"
    records = [send(n) for n in range(6)] + [failed_send(6)]
    path.write_bytes(ndjson(records) + b"not json\n")
    load_source_files(con, "sends", str(path))

    edited = [records[0], send(1, Fee=2), send(7), *records[2:], send(8)]
    path.write_bytes(ndjson(edited) + b"not json\n")
    report = load_source_files(con, "sends", str(path))

    # Same SerialNo and number: the same send, loaded once (the first version stays).
    assert (report.records, report.rows, report.duplicates, report.quarantined) == (10, 2, 7, 1)
    assert sorted(serials(con)) == sorted([*(serial(n) for n in range(6)), "", serial(7), serial(8)])
    assert con.execute("select fee from raw.sends where serial_no = ?", [serial(1)]).fetchall() == [(1,)]
    assert keys_loaded_twice(con) == []
    # The bad line moved from record 7 to record 9: a different place is a different record.
    assert con.execute("select record_index from raw.quarantine order by 1").fetchall() == [(7,), (9,)]
    path.write_bytes(b"\n" + path.read_bytes())  # a blank line first: every record where it was
    assert load_source_files(con, "sends", str(path)).quarantined == 0
    assert count(con, "raw.quarantine") == 2


def test_record_keys(con, tmp_path):
    same_content = failed_send(1)
    other_number = {**failed_send(1), "PhoneNumber": "+8618500000099"}
    conversions = [{"SerialNo": "s-1", "ConversionTime": 1620734288}, {"SerialNo": "s-1", "ConversionTime": 1620734299},
                   {"SerialNo": "s-1", "ConversionTime": "1620734288"}]
    write_ndjson(tmp_path / "sends.ndjson", [send(1), send(1), send(1, PhoneNumber="+8618500000099"),
                                             same_content, same_content, other_number])
    write_ndjson(tmp_path / "conversions.ndjson", conversions)

    sends = load_source_files(con, "sends", str(tmp_path / "sends.ndjson"))
    converted = load_source_files(con, "conversions", str(tmp_path / "conversions.ndjson"))

    assert (sends.records, sends.rows, sends.duplicates) == (6, 4, 2)
    assert con.execute("select serial_no, phone_number, source_row from raw.sends order by source_row").fetchall() == [
        (serial(1), "+8618500000001", 0), (serial(1), "+8618500000099", 2), ("", "+8618500000001", 3),
        ("", "+8618500000099", 5)]
    assert (converted.rows, converted.duplicates) == (2, 1)
    assert con.execute("select serial_no, conversion_time from raw.conversions order by 2").fetchall() == [
        ("s-1", 1620734288), ("s-1", 1620734299)]
    # A failed send differs from another in any field: the same number a second later is another.
    with (tmp_path / "sends.ndjson").open("ab") as log:
        log.write(ndjson([{**same_content, "SendTime": same_content["SendTime"] + 1}, {**same_content, "SerialNo": None}]))
    assert load_source_files(con, "sends", str(tmp_path / "sends.ndjson")).rows == 2


def test_values_that_share_text_are_different_records(con, tmp_path):
    write_ndjson(tmp_path / "sends.ndjson", [send(1, SerialNo="a|b", PhoneNumber="c"),
                                             send(1, SerialNo="a", PhoneNumber="b|c"),
                                             send(1, SerialNo="a\\", PhoneNumber="|c")])

    assert load_source_files(con, "sends", str(tmp_path / "sends.ndjson")).rows == 3


def test_an_appended_csv_file_is_read_from_where_it_ended(con, tmp_path):
    path = tmp_path / "sends.csv"
    path.write_text(csv_text([send(n) for n in range(3)], SEND_FIELDS), encoding="utf-8")
    load_source_files(con, "sends", str(path))
    with path.open("a", encoding="utf-8") as log:
        log.write(csv_text([send(3, Message='a "quoted",\nmultiline message'), send(4)], SEND_FIELDS, header=False))

    report = load_source_files(con, "sends", str(path))

    assert (report.records, report.rows, report.problems) == (2, 2, [])
    assert con.execute("select message, send_time, source_row from raw.sends where source_row >= 3 order by 3").fetchall() == [
        ('a "quoted",\nmultiline message', 1620734191, 3), ("send success", 1620734192, 4)]


def test_the_part_already_read_is_checked_before_reading_on(con, tmp_path):
    path = tmp_path / "sends.ndjson"
    path.write_bytes(ndjson(send(n) for n in range(100)))
    load_source_files(con, "sends", str(path))
    # The same length as before and more: but the start changed, so it is read whole.
    data = path.read_bytes().replace(serial(0).encode(), serial(900).encode(), 1)
    path.write_bytes(data + ndjson([send(100)]))

    report = load_source_files(con, "sends", str(path))

    assert (report.records, report.rows, report.duplicates) == (101, 2, 99)
    assert count(con, "raw.sends") == 102


def test_a_last_line_still_being_written_waits_for_its_end(con, tmp_path):
    path = tmp_path / "sends.ndjson"
    line = orjson.dumps(send(1))
    path.write_bytes(ndjson([send(0)]) + line[:40])

    first = load_source_files(con, "sends", str(path))

    assert (first.records, first.rows, first.quarantined, first.problems) == (1, 1, 0, [])
    with path.open("ab") as log:
        log.write(line[40:] + b"\n")
    second = load_source_files(con, "sends", str(path))
    assert (second.records, second.rows, second.quarantined) == (1, 1, 0)

    # A file nobody wrote to for a while is complete: its last line needs no line end.
    with path.open("ab") as log:
        log.write(orjson.dumps(send(2)))
    assert load_source_files(con, "sends", str(path)).rows == 0
    settle(path)
    assert load_source_files(con, "sends", str(path)).rows == 1
    assert serials(con) == [serial(0), serial(1), serial(2)]
    assert load_source_files(con, "sends", str(path)).unchanged_files == 1


def test_rows_of_an_older_warehouse_count_as_loaded(tmp_path, warehouse_path):
    """A warehouse loaded before reads were insert-only: the keys are columns of the rows, so
    reading their files again adds nothing."""
    path = write_ndjson(tmp_path / "sends.ndjson", [send(n) for n in range(3)] + [failed_send(3)])
    old = duckdb.connect(str(warehouse_path))
    old.execute("create schema raw")
    old.execute("create table raw.sends (serial_no varchar, phone_number varchar, fee bigint, session_context varchar, "
                "code varchar, message varchar, iso_code varchar, send_time bigint, sms_sdk_app_id varchar, "
                "template_id varchar, sign_name varchar, source_file varchar not null, source_row integer not null)")
    old.execute("create table raw.source_files (source_file varchar primary key, kind varchar not null, "
                "size_bytes bigint not null, mtime_ns bigint not null, rows integer not null, quarantined integer not null, "
                "loaded_at timestamptz not null default current_timestamp)")
    for row, record in enumerate([send(n) for n in range(3)] + [failed_send(3)]):
        old.execute("insert into raw.sends values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [*record.values(), str(path), row])
    stat = os.stat(path)
    old.execute("insert into raw.source_files values (?, 'sends', ?, ?, 4, 0, now())", [str(path), stat.st_size, stat.st_mtime_ns])
    old.close()
    with path.open("ab") as log:
        log.write(ndjson([send(4)]))

    with open_warehouse(warehouse_path) as con:
        report = load_source_files(con, "sends", str(path))

        assert (report.rows, report.duplicates) == (1, 4)
        assert count(con, "raw.sends") == 5 and keys_loaded_twice(con) == []


def test_a_conversions_file_rewritten_in_place(con, tmp_path):
    path = tmp_path / "conversions.csv"
    path.write_text("SerialNo,ConversionTime\ns-1,1620734288\ns-2,-5\n")
    load_source_files(con, "conversions", str(path))
    path.write_text("SerialNo,ConversionTime\ns-3,1620734300\n")

    report = load_source_files(con, "conversions", str(path))

    assert (report.rows, report.problems) == (1, [])
    assert con.execute("select serial_no from raw.conversions order by 1").fetchall() == [("s-1",), ("s-3",)]
    assert con.execute("select reason, record_index from raw.quarantine").fetchall() == [
        ("ConversionTime '-5' is negative", 1)]
    assert keys_loaded_twice(con, "raw.conversions") == []
