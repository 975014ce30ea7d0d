"""Loading the sending application's sends log and conversion events: the three formats agree,
malformed records are quarantined while the rest of the file loads, unreadable files are
reported without stopping the others, and loading again is idempotent."""

import io

import orjson
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.warehouse import sending_app as sources
from pipelines.warehouse import sending_app_parse as parsing
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.sending_app import load_source_files
from sending_app_files import SEND_FIELDS, count, send, settle, write_csv, write_ndjson, write_parquet

SENDS = [
    {"SerialNo": "2028:6376154212416311681", "PhoneNumber": "+8618511122233", "Fee": 1, "SessionContext": "order=42",
     "Code": "Ok", "Message": "send success", "IsoCode": "CN", "SendTime": 1620734188, "SmsSdkAppId": "1400006666",
     "TemplateId": "1110", "SignName": "Tencent Cloud"},
    {"SerialNo": "2028:6376154212416311682", "PhoneNumber": "+447911123456", "Fee": 2, "SessionContext": "",
     "Code": "Ok", "Message": 'with a comma, and "quotes"', "IsoCode": "GB", "SendTime": 1620734189,
     "SmsSdkAppId": "1400006666", "TemplateId": "1111", "SignName": "Tencent Cloud"},
    # A failed submission, as in SendSms example 2: no SerialNo, and it is still a record.
    {"SerialNo": "", "PhoneNumber": "+8618511122266", "Fee": 0, "SessionContext": "",
     "Code": "LimitExceeded.PhoneNumberDailyLimit",
     "Message": "the number of sms messages sent from a single mobile number every day exceeds the upper limit",
     "IsoCode": "CN", "SendTime": 1620734190, "SmsSdkAppId": "1400006666", "TemplateId": "1110",
     "SignName": "Tencent Cloud"},
]

CONVERSIONS = [
    {"SerialNo": "2028:6376154212416311681", "ConversionTime": 1620734288},
    {"SerialNo": "2028:6376154212416311682", "ConversionTime": 1620734388},
]

RAW_SEND_COLUMNS = "serial_no, phone_number, fee, session_context, code, message, iso_code, send_time, " \
                   "sms_sdk_app_id, template_id, sign_name, source_row"


def send_rows(con, path):
    return con.execute(f"select {RAW_SEND_COLUMNS} from raw.sends where source_file = ? order by source_row",
                       [str(path)]).fetchall()


def ndjson_lines(lines):
    return b"".join(line + b"\n" for line in lines)


def quarantine(con, path):
    return con.execute("select reason, payload, record_index from raw.quarantine where batch_id = ? order by record_index",
                       [str(path)]).fetchall()


def test_each_format_loads_the_same_rows(con, tmp_path):
    files = [
        write_ndjson(tmp_path / "sends.ndjson", SENDS),
        write_csv(tmp_path / "sends.csv", SENDS, SEND_FIELDS),
        write_parquet(tmp_path / "sends.parquet", SENDS),
        write_ndjson(tmp_path / "sends.jsonl", SENDS),
    ]
    report = load_source_files(con, "sends", str(tmp_path / "sends.*"))

    # The same records in four files: loaded from the first, the others' are duplicates.
    assert (report.files, report.loaded_files, report.records, report.rows, report.duplicates, report.quarantined,
            report.problems) == (4, 4, 12, 3, 9, 0, [])
    expected = [
        ("2028:6376154212416311681", "+8618511122233", 1, "order=42", "Ok", "send success", "CN", 1620734188,
         "1400006666", "1110", "Tencent Cloud", 0),
        ("2028:6376154212416311682", "+447911123456", 2, "", "Ok", 'with a comma, and "quotes"', "GB", 1620734189,
         "1400006666", "1111", "Tencent Cloud", 1),
        ("", "+8618511122266", 0, "", "LimitExceeded.PhoneNumberDailyLimit", SENDS[2]["Message"], "CN", 1620734190,
         "1400006666", "1110", "Tencent Cloud", 2),
    ]
    assert send_rows(con, tmp_path / "sends.csv") == expected
    recorded = con.execute("select source_file, kind, size_bytes, read_bytes, records, rows from raw.source_files order by 1").fetchall()
    assert recorded == sorted((str(p), "sends", p.stat().st_size, p.stat().st_size, 3, 3 if p.suffix == ".csv" else 0)
                              for p in files)
    for path in files:
        with open_warehouse(tmp_path / f"{path.name}.duckdb") as alone:
            load_source_files(alone, "sends", str(path))
            assert send_rows(alone, path) == expected, path.name


def test_conversions_in_each_format(con, tmp_path):
    files = [write_ndjson(tmp_path / "c.ndjson", CONVERSIONS),
             write_csv(tmp_path / "c.csv", CONVERSIONS, ["SerialNo", "ConversionTime"]),
             write_parquet(tmp_path / "c.parquet", CONVERSIONS)]

    report = load_source_files(con, "conversions", str(tmp_path / "c.*"))

    assert (report.loaded_files, report.rows, report.duplicates, report.problems) == (3, 2, 4, [])
    for path in files:
        with open_warehouse(tmp_path / f"{path.name}.duckdb") as alone:
            load_source_files(alone, "conversions", str(path))
            assert alone.execute("select serial_no, conversion_time, source_row from raw.conversions order by 3").fetchall() == [
                ("2028:6376154212416311681", 1620734288, 0), ("2028:6376154212416311682", 1620734388, 1)], path.name


def test_malformed_ndjson_loads_good_rows_and_quarantines_the_rest(con, tmp_path):
    ok = dict(SENDS[0])
    lines = [
        orjson.dumps(ok),
        b'{"SerialNo": "s-2", "Code": "Ok", "SendTime": 16207',          # cut short: not JSON
        orjson.dumps({**ok, "SerialNo": ""}),                             # Ok send without SerialNo
        b"",                                                              # blank: not a record
        orjson.dumps({**ok, "SerialNo": "s-4", "SendTime": "abc"}),
        orjson.dumps(SENDS[2]),                                           # failed send: kept
        orjson.dumps({**ok, "SerialNo": "s-6", "SendTime": "1620734199", "Unknown": {"x": [1]}}),
    ]
    path = tmp_path / "sends.ndjson"
    path.write_bytes(b"\n".join(lines) + b"\n")

    report = load_source_files(con, "sends", str(path))

    assert (report.rows, report.quarantined) == (3, 3)
    assert report.problems == [
        f"{path}: malformed rows quarantined, the others loaded (3 bad rows of 6; first at row 1: "
        f"not valid JSON: unexpected end of data at column 52)"
    ]
    assert [(row[0], row[-1]) for row in send_rows(con, path)] == [
        (ok["SerialNo"], 0), ("", 4), ("s-6", 5)]
    assert con.execute("select send_time from raw.sends where serial_no = 's-6'").fetchone() == (1620734199,)
    assert quarantine(con, path) == [
        ("not valid JSON: unexpected end of data at column 52", lines[1].decode(), 1),
        ("missing SerialNo on a send with Code Ok", lines[2].decode(), 2),
        ("SendTime 'abc' is not a whole number", lines[4].decode(), 3),
    ]


def test_values_are_converted_or_quarantined_by_one_rule(con, tmp_path):
    records = [
        {"Fee": "2", "SendTime": " 1620734188 "},
        {"Fee": 3.0, "SendTime": "1620734188.0"},
        {"Fee": ""},
        {"Fee": 0},
        {"Fee": "x"},
        {"Fee": 1.5},
        {"Fee": True},
        b'{"SerialNo": "s-7", "Code": "Ok", "SendTime": 1180591620717411303424}',
        {"SendTime": None},
        {"Fee": -1},
        {"Fee": " -2"},
        {"SendTime": -5},
        {"SerialNo": None},
        {"SerialNo": "", "Code": None},
        "not an object",
    ]
    path = tmp_path / "sends.ndjson"
    path.write_bytes(b"".join(
        (orjson.dumps({"SerialNo": f"s-{n}", "Code": "Ok", "SendTime": 1620734188, **r}) if isinstance(r, dict)
         else r if isinstance(r, bytes) else orjson.dumps(r)) + b"\n" for n, r in enumerate(records)))

    load_source_files(con, "sends", str(path))

    assert con.execute("select serial_no, fee, send_time from raw.sends order by source_row").fetchall() == [
        ("s-0", 2, 1620734188), ("s-1", 3, 1620734188), ("s-2", None, 1620734188), ("s-3", 0, 1620734188)]
    assert [(reason, index) for reason, _, index in quarantine(con, path)] == [
        ("Fee 'x' is not a whole number", 4),
        ("Fee '1.5' is not a whole number", 5),
        ("Fee 'true' is not a whole number", 6),
        ("SendTime '1180591620717411303424' is not a whole number", 7),
        ("missing SendTime", 8),
        ("Fee '-1' is negative", 9),
        ("Fee '-2' is negative", 10),
        ("SendTime '-5' is negative", 11),
        ("missing SerialNo on a send with Code Ok", 12),
        ("missing SerialNo and Code", 13),
        ("not a JSON object", 14),
    ]


def test_a_text_field_of_another_json_type_is_quarantined(con, tmp_path):
    path = tmp_path / "sends.ndjson"
    path.write_bytes(ndjson_lines([
        orjson.dumps(send(0, SerialNo=6376154212416311681)),
        orjson.dumps(send(1, PhoneNumber=["+8618500000001"])),
        orjson.dumps(send(2, PhoneNumber={"number": "+8618500000002"})),
        orjson.dumps(send(3, SessionContext=True)),
        orjson.dumps(send(4, TemplateId=1110)),
        b'{"Serial\\u004eo": 5, "Code": "Ok", "SendTime": 1620734188}',
        orjson.dumps(send(6, Message='"SerialNo": 5', Extra={"SerialNo": 5}, SessionContext=None)),
        orjson.dumps(send(7, Fee="1", TemplateId="1110")),
    ]))
    conversions = tmp_path / "conversions.ndjson"
    conversions.write_bytes(b'{"SerialNo": 17, "ConversionTime": 1620734288}\n')

    report = load_source_files(con, "sends", str(path))
    converted = load_source_files(con, "conversions", str(conversions))

    assert [(reason, index) for reason, _, index in quarantine(con, path)] == [
        ("SerialNo is a number, not text", 0),
        ("PhoneNumber is an array, not text", 1),
        ("PhoneNumber is an object, not text", 2),
        ("SessionContext is a boolean, not text", 3),
        ("TemplateId is a number, not text", 4),
        ("SerialNo is a number, not text", 5),
    ]
    assert (report.rows, converted.rows, converted.quarantined) == (2, 0, 1)
    assert con.execute("select serial_no, message, session_context from raw.sends order by source_row").fetchall() == [
        (send(6)["SerialNo"], '"SerialNo": 5', None), (send(7)["SerialNo"], "send success", "order=7")]
    assert quarantine(con, conversions)[0][0] == "SerialNo is a number, not text"


def test_a_byte_order_mark_is_not_part_of_the_first_record(con, tmp_path):
    ndjson_path = tmp_path / "bom.ndjson"
    ndjson_path.write_bytes(b"\xef\xbb\xbf" + orjson.dumps(send(0)) + b"\n" + orjson.dumps(send(1)) + b"\n")
    csv_path = tmp_path / "bom.csv"
    csv_path.write_bytes(b"\xef\xbb\xbfSerialNo,Code,SendTime\ns-2,Ok,1620734188\n")

    report = load_source_files(con, "sends", str(tmp_path / "bom.*"))

    assert (report.rows, report.quarantined, report.problems) == (3, 0, [])
    with ndjson_path.open("ab") as log:
        log.write(orjson.dumps(send(3)) + b"\n")
    assert load_source_files(con, "sends", str(ndjson_path)).rows == 1


def test_csv_with_ragged_rows(con, tmp_path):
    path = tmp_path / "sends.csv"
    path.write_text(
        "SerialNo,Code,SendTime,Extra\n"
        "s-0,Ok,1620734188,x\n"
        "s-1,Ok,1620734188\n"
        "\n"
        "s-2,Ok,1620734188,x,y\n"
        's-3,"Ok",1620734188,"a, b"\n'
        "s-4,Ok,,x\n",
        encoding="utf-8",
    )

    report = load_source_files(con, "sends", str(path))

    assert report.problems == [
        f"{path}: malformed rows quarantined, the others loaded (3 bad rows of 5; first at row 1: "
        "3 fields where the header has 4)"
    ]
    assert [(row[0], row[-1]) for row in send_rows(con, path)] == [("s-0", 0), ("s-3", 3)]
    assert quarantine(con, path) == [
        ("3 fields where the header has 4", "s-1,Ok,1620734188", 1),
        ("5 fields where the header has 4", "s-2,Ok,1620734188,x,y", 2),
        ("missing SendTime", "s-4,Ok,,x", 4),
    ]


def test_csv_quote_left_open_spoils_only_what_follows_it(con, tmp_path):
    path = tmp_path / "sends.csv"
    path.write_text(
        "SerialNo,Code,SendTime\n"
        "s-0,Ok,1620734188\n"
        's-1,Ok,1620734188\n'
        's-2,"Ok,1620734188\n'
        "s-3,Ok,1620734188\n",
        encoding="utf-8",
    )
    settle(path)  # while a file is being written, a record after an open quote waits for more

    report = load_source_files(con, "sends", str(path))

    assert [row[0] for row in send_rows(con, path)] == ["s-0", "s-1"]
    assert report.quarantined == 1
    assert quarantine(con, path)[0][2] == 2


def test_csv_line_ends(con, tmp_path):
    crlf = tmp_path / "crlf.csv"
    crlf.write_bytes(b"\xef\xbb\xbfSerialNo,Code,SendTime\r\ns-0,Ok,1\r\n\"s-1\",Ok,2\r\n\r\n\r\n")
    old_mac = tmp_path / "cr.csv"
    old_mac.write_bytes(b"SerialNo,Code,SendTime\rt-0,Ok,1\rt-1,Ok,2\r")

    report = load_source_files(con, "sends", str(tmp_path / "*.csv"))

    assert (report.rows, report.problems) == (4, [])
    for path, prefix in ((crlf, "s"), (old_mac, "t")):
        assert [(r[0], r[7], r[-1]) for r in send_rows(con, path)] == [(f"{prefix}-0", 1, 0), (f"{prefix}-1", 2, 1)]


def test_parquet_types_follow_the_same_rules(con, tmp_path):
    path = tmp_path / "sends.parquet"
    pl.DataFrame({
        "SerialNo": ["s-0", "s-1", "s-2", "s-3"],
        "Code": ["Ok", "Ok", "Ok", "Ok"],
        "SendTime": ["1620734188", "1620734188.0", "later", "-1"],
        "Fee": [2.0, None, 1.0, 1.0],
        "TemplateId": ["1110", "1111", "1112", "1113"],
    }).write_parquet(path)
    typed = tmp_path / "typed.parquet"
    pl.DataFrame({
        "SerialNo": ["t-0", "t-1", None], "Code": ["Ok", "Ok", "Ok"], "SendTime": [1, 2, 3],
        "PhoneNumber": [[1], None, None], "SessionContext": [True, False, None],
    }).write_parquet(typed)
    numbered = tmp_path / "numbered.parquet"
    pl.DataFrame({"SerialNo": [6376154212416311681], "Code": ["Ok"], "SendTime": [1]}).write_parquet(numbered)

    load_source_files(con, "sends", str(tmp_path / "*.parquet"))

    assert con.execute("select serial_no, send_time, fee, template_id from raw.sends").fetchall() == [
        ("s-0", 1620734188, 2, "1110"), ("s-1", 1620734188, None, "1111")]
    assert quarantine(con, path) == [
        ("SendTime 'later' is not a whole number",
         '{"SerialNo":"s-2","Code":"Ok","SendTime":"later","Fee":1.0,"TemplateId":"1112"}', 2),
        ("SendTime '-1' is negative", '{"SerialNo":"s-3","Code":"Ok","SendTime":"-1","Fee":1.0,"TemplateId":"1113"}', 3)]
    assert [(reason, index) for reason, _, index in quarantine(con, typed)] == [
        ("PhoneNumber is List(Int64), not text", 0), ("SessionContext is Boolean, not text", 1),
        ("missing SerialNo on a send with Code Ok", 2)]
    assert [(reason, index) for reason, _, index in quarantine(con, numbered)] == [("SerialNo is Int64, not text", 0)]


def test_unreadable_files_are_reported_and_the_others_load(con, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = write_ndjson(folder / "a-good.ndjson", SENDS)
    corrupt = folder / "b-corrupt.parquet"
    corrupt.write_bytes(b"PAR1 this is not a parquet file PAR1")
    headless = write_csv(folder / "c-no-sendtime.csv", SENDS, ["SerialNo", "Code", "PhoneNumber"])
    unknown = folder / "d-notes.txt"
    unknown.write_text("hello")
    others = [send(n) for n in range(3)]
    also_good = write_csv(folder / "e-good.csv", others, SEND_FIELDS)

    report = load_source_files(con, "sends", str(folder / "*"))

    assert (report.files, report.loaded_files, report.rows, report.quarantined) == (5, 2, 6, 3)
    assert len(report.problems) == 3
    assert report.problems[0].startswith(f"{corrupt}: cannot be read, nothing loaded from it (not a readable Parquet file")
    assert report.problems[1] == (
        f"{headless}: cannot be read, nothing loaded from it "
        "(the header has no SendTime column (it has: SerialNo, Code, PhoneNumber))"
    )
    assert report.problems[2].startswith(f"{unknown}: cannot be read, nothing loaded from it (unsupported file type .txt")
    assert len(send_rows(con, good)) == len(send_rows(con, also_good)) == 3
    failures = con.execute("select batch_id, record_index from raw.quarantine order by 1").fetchall()
    assert failures == [(str(corrupt), -1), (str(headless), -1), (str(unknown), -1)]

    again = load_source_files(con, "sends", str(folder / "*"))
    assert (again.unchanged_files, again.loaded_files, len(again.problems)) == (2, 0, 3)
    assert count(con, "raw.quarantine") == 3

    write_parquet(corrupt, [send(n) for n in range(3, 6)])
    fixed = load_source_files(con, "sends", str(folder / "*"))
    assert fixed.loaded_files == 1 and len(send_rows(con, corrupt)) == 3
    assert quarantine(con, corrupt) == []


def test_loading_again_changes_nothing(con, tmp_path):
    path = tmp_path / "sends.ndjson"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in SENDS) + b"garbage\n")
    write_ndjson(tmp_path / "conv.ndjson", CONVERSIONS)
    first = load_source_files(con, "sends", str(tmp_path / "sends.ndjson"))
    load_source_files(con, "conversions", str(tmp_path / "conv.ndjson"))
    before = [count(con, t) for t in ("raw.sends", "raw.conversions", "raw.quarantine", "raw.source_files")]

    second = load_source_files(con, "sends", str(tmp_path / "sends.ndjson"))
    third = load_source_files(con, "conversions", str(tmp_path / "conv.ndjson"))

    assert (first.rows, first.quarantined) == (3, 1)
    assert (second.files, second.unchanged_files, second.loaded_files, second.rows, second.problems) == (1, 1, 0, 0, [])
    assert third.unchanged_files == 1
    assert [count(con, t) for t in ("raw.sends", "raw.conversions", "raw.quarantine", "raw.source_files")] == before == [3, 2, 1, 2]


def test_an_appended_file_is_read_from_where_it_ended(con, tmp_path):
    path = tmp_path / "sends.ndjson"
    path.write_bytes(orjson.dumps(SENDS[0]) + b"\nnot json\n")
    load_source_files(con, "sends", str(path))

    with path.open("ab") as handle:
        handle.write(orjson.dumps(SENDS[1]) + b"\n" + orjson.dumps(SENDS[2]) + b"\n")
    report = load_source_files(con, "sends", str(path))

    assert (report.loaded_files, report.records, report.rows, report.quarantined) == (1, 2, 2, 0)
    assert [(row[0], row[-1]) for row in send_rows(con, path)] == [
        (SENDS[0]["SerialNo"], 0), (SENDS[1]["SerialNo"], 2), ("", 3)]
    assert [(reason[:14], index) for reason, _, index in quarantine(con, path)] == [("not valid JSON", 1)]
    stat = path.stat()
    assert con.execute("select size_bytes, mtime_ns, read_bytes, records, rows, quarantined from raw.source_files").fetchall() == [
        (stat.st_size, stat.st_mtime_ns, stat.st_size, 4, 3, 1)]


def test_a_removed_file_keeps_its_rows(con, tmp_path):
    path = write_ndjson(tmp_path / "sends.ndjson", SENDS)
    load_source_files(con, "sends", str(tmp_path / "*.ndjson"))
    path.unlink()

    report = load_source_files(con, "sends", str(tmp_path / "*.ndjson"))

    assert report.problems == [f"no file matches {tmp_path / '*.ndjson'}"]
    assert count(con, "raw.sends") == 3


def test_conversions_need_serial_no_and_time(con, tmp_path):
    path = tmp_path / "conv.csv"
    path.write_text("ConversionTime,SerialNo,Note\n1620734288,s-1,a\n,s-2,b\n1620734288,,c\n1620734288.0,s-4,d\n")

    report = load_source_files(con, "conversions", str(path))

    assert con.execute("select serial_no, conversion_time, source_row from raw.conversions").fetchall() == [
        ("s-1", 1620734288, 0), ("s-4", 1620734288, 3)]
    assert [(reason, payload, index) for reason, payload, index in quarantine(con, path)] == [
        ("missing ConversionTime", ",s-2,b", 1), ("missing SerialNo", "1620734288,,c", 2)]
    assert report.problems[0].endswith("(2 bad rows of 4; first at row 1: missing ConversionTime)")


def test_bytes_that_are_not_utf8_spoil_only_their_record(con, tmp_path):
    ndjson = tmp_path / "sends.ndjson"
    ndjson.write_bytes(orjson.dumps(SENDS[0]) + b'\n{"SerialNo": "\xff", "Code": "Ok", "SendTime": 1}\n' + orjson.dumps(SENDS[1]) + b"\n")
    csv_path = tmp_path / "sends.csv"
    csv_path.write_bytes(b"SerialNo,Code,SendTime\ns-0,Ok,1\ns-\xff,Ok,1\ns-2,Ok,1\n")

    load_source_files(con, "sends", str(tmp_path / "sends.*"))

    assert [r[-1] for r in send_rows(con, ndjson)] == [0, 2]
    assert [r[-1] for r in send_rows(con, csv_path)] == [0, 2]
    assert quarantine(con, ndjson)[0][0].startswith("not valid JSON: str is not valid UTF-8")
    assert quarantine(con, csv_path) == [("not valid UTF-8", "s-\ufffd,Ok,1", 1)]


def test_patterns(con, tmp_path, monkeypatch):
    nested = tmp_path / "logs" / "2026" / "01"
    nested.mkdir(parents=True)
    write_ndjson(nested / "sends.ndjson", SENDS)
    write_ndjson(tmp_path / "logs" / "sends.ndjson", [send(1)])
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "logs")

    assert load_source_files(con, "sends", None) == sources.SourceReport("sends")
    assert load_source_files(con, "sends", "") == sources.SourceReport("sends")
    assert load_source_files(con, "sends", "~/logs/**/*.ndjson").rows == 4
    assert load_source_files(con, "sends", "2026/*/sends.ndjson").unchanged_files == 1
    missing = load_source_files(con, "sends", "~/nowhere/*.csv")
    assert (missing.files, missing.problems) == (0, ["no file matches ~/nowhere/*.csv"])
    assert con.execute("select distinct source_file from raw.sends order by 1").fetchall() == [
        (str(nested / "sends.ndjson"),), (str(tmp_path / "logs" / "sends.ndjson"),)]


def test_small_blocks_keep_record_numbers(con, tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "BLOCK_BYTES", 300)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 3)
    records = [{"SerialNo": f"n-{i}", "Code": "Ok", "SendTime": 1620734188 + i} for i in range(40)]
    lines = [orjson.dumps(r) for r in records]
    lines[17] = b"{broken"
    lines[31] = b'{"SerialNo": "n-31", "Code": "Ok", "SendTime": "later"}'
    (tmp_path / "sends.ndjson").write_bytes(b"\n".join(lines))
    settle(tmp_path / "sends.ndjson")  # its last line has no line end
    csv_lines = ["SerialNo,Code,SendTime"] + [f"c-{i},Ok,{1620734188 + i}" for i in range(40)]
    csv_lines[1 + 23] = "c-23,Ok"
    (tmp_path / "sends.csv").write_text("\n".join(csv_lines) + "\n")
    write_parquet(tmp_path / "sends.parquet", [{"SerialNo": f"p-{i}", "Code": "Ok", "SendTime": i - 1} for i in range(10)])

    report = load_source_files(con, "sends", str(tmp_path / "sends.*"))

    assert (report.rows, report.quarantined) == (86, 4)
    for prefix, suffix, bad, total in (("c", "csv", {23}, 40), ("n", "ndjson", {17, 31}, 40), ("p", "parquet", {0}, 10)):
        loaded = con.execute("select serial_no, source_row from raw.sends where source_file like ?", [f"%.{suffix}"]).fetchall()
        assert loaded == [(f"{prefix}-{i}", i) for i in range(total) if i not in bad]
        assert {row[2] for row in quarantine(con, tmp_path / f"sends.{suffix}")} == bad


LINE = st.one_of(
    st.builds(lambda n, t: orjson.dumps({"SerialNo": f"s-{n}", "Code": "Ok", "SendTime": t}),
              st.integers(0, 10**6), st.one_of(st.integers(0, 2**40), st.integers(0, 2**40).map(str))),
    st.builds(lambda t: orjson.dumps({"SerialNo": "", "Code": "Failed", "SendTime": t}), st.integers(0, 2**40)),
    st.sampled_from([b"", b"   ", b"[]", b"null", b"{", b'{"SendTime": "x"}', b'{"SerialNo": "s", "Code": "Ok"}',
                     b'"text"', b'{"SerialNo": 5, "Code": "Ok", "SendTime": 1.5}', b'{"a": 1} {"b": 2}']),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(LINE, max_size=25), st.booleans(), st.sampled_from([64, 1 << 20]))
def test_every_record_is_loaded_or_quarantined_exactly_once(lines, final_newline, block_bytes):
    data = b"\n".join(lines) + (b"\n" if final_newline else b"")
    request = parsing.ReadRequest(kind="sends", path="x.ndjson", file_format="ndjson", end=len(data), settled=True,
                                  block_bytes=block_bytes, chunk_rows=10)
    events = list(parsing.read_file(request, io.BytesIO(data)))
    chunks = [event for event in events if isinstance(event, parsing.Chunk)]

    records = [line for line in data.split(b"\n") if line.strip()]
    good_rows = [row for chunk in chunks for row in chunk.good.get_column("source_row").to_list()]
    bad = [entry for chunk in chunks for entry in chunk.bad]
    assert events[-1] == parsing.ReadEnd(len(data), len(records), parsing._fingerprint(io.BytesIO(data), len(data)))
    assert sum(chunk.records for chunk in chunks) == len(records)
    assert sorted(good_rows + [row for row, _, _ in bad]) == list(range(len(records)))
    assert all(payload == records[row].decode() for row, _, payload in bad)
    for chunk in chunks:
        for row, serial in chunk.good.select("source_row", "serial_no").iter_rows():
            assert orjson.loads(records[row])["SerialNo"] == serial


def test_duckdb_memory_is_limited_while_files_load_and_given_back(con, tmp_path, monkeypatch):
    before = con.execute("select current_setting('memory_limit')").fetchone()[0]
    seen = []
    load_file = sources._load_file

    def load_and_look(con, *args):
        seen.append(con.execute("select current_setting('memory_limit')").fetchone()[0])
        return load_file(con, *args)

    monkeypatch.setattr(sources, "_load_file", load_and_look)
    load_source_files(con, "sends", str(write_ndjson(tmp_path / "sends.ndjson", SENDS)))

    assert seen == ["244.1 MiB"]
    assert con.execute("select current_setting('memory_limit')").fetchone()[0] == before
    con.execute("set memory_limit = '8GB'")  # someone's own limit is left alone
    load_source_files(con, "sends", str(write_ndjson(tmp_path / "more.ndjson", [send(9)])))
    assert seen[-1] == con.execute("select current_setting('memory_limit')").fetchone()[0] == "7.4 GiB"
