"""Files of the sending application for the tests of pipelines/warehouse/sending_app.py: writers for
the three formats, sends log records in the simulator's shape, a Parquet file that kills an
in-process reader, and queries of what a load left in the warehouse."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time

import orjson
import polars as pl

SEND_FIELDS = ["SerialNo", "PhoneNumber", "Fee", "SessionContext", "Code", "Message", "IsoCode", "SendTime",
               "SmsSdkAppId", "TemplateId", "SignName"]


def send(n: int, **fields) -> dict:
    """Sends log record number `n`: a successful send with SerialNo 2028:<n>, unless overridden."""
    return {"SerialNo": f"2028:{6376154212416311681 + n}", "PhoneNumber": f"+86185{n:08d}", "Fee": 1,
            "SessionContext": f"order={n}", "Code": "Ok", "Message": "send success", "IsoCode": "CN",
            "SendTime": 1620734188 + n, "SmsSdkAppId": "1400006666", "TemplateId": "1110",
            "SignName": "Tencent Cloud", **fields}


def failed_send(n: int) -> dict:
    """A failed submission: no SerialNo, so its content is its key."""
    return send(n, SerialNo="", Fee=0, Code="LimitExceeded.PhoneNumberDailyLimit",
                Message="the number of sms messages sent from a single mobile number every day exceeds the upper limit")


def ndjson(records) -> bytes:
    return b"".join(orjson.dumps(record) + b"\n" for record in records)


def write_ndjson(path, records):
    path.write_bytes(ndjson(records))
    return path


def csv_text(records, fields, *, header: bool = True) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if header:
        writer.writerow(fields)
    for record in records:
        writer.writerow(["" if record.get(field) is None else record[field] for field in fields])
    return out.getvalue()


def write_csv(path, records, fields):
    path.write_text(csv_text(records, fields), encoding="utf-8")
    return path


def write_parquet(path, records):
    pl.DataFrame(records).write_parquet(path)
    return path


def settle(path) -> None:
    """Make `path` look written a minute ago: a last line without a line end then counts as
    complete (a fresh one may still be being written)."""
    past = time.time() - 60
    os.utime(path, (past, past))


def corrupt_parquet(path, rows: int = 20):
    """A 4 KB Parquet sends log whose first data page header (in a column chunk) claims -1
    values: polars then asks for 2**61 bytes and aborts the process (SIGABRT)."""
    pl.DataFrame([send(n) for n in range(rows)]).write_parquet(path, compression="uncompressed", statistics=False)
    data = bytearray(path.read_bytes())
    # Thrift compact PageHeader: field 5 (DataPageHeader, a struct), then its field 1, num_values:
    # an i32 varint holding zigzag(rows) = 2 * rows; zigzag(-1) is 1.
    assert 2 * rows < 128
    at = data.find(b"\x2c\x15" + bytes([2 * rows]))
    assert at > 0, "no data page header found"
    data[at + 2] = 0x01
    path.write_bytes(bytes(data))
    return path


def load_in_subprocess(warehouse, kind: str, pattern: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """`load_source_files` in a process of its own (so that a crash shows as its exit status,
    not as the death of the test run); its report is the last line of stdout, as JSON."""
    script = (
        "import dataclasses, json, sys\n"
        "from pipelines.warehouse.db import open_warehouse\n"
        "from pipelines.warehouse.sending_app import load_source_files\n"
        "with open_warehouse(sys.argv[1]) as con:\n"
        "    print(json.dumps(dataclasses.asdict(load_source_files(con, sys.argv[2], sys.argv[3]))))\n"
    )
    return subprocess.run([sys.executable, "-c", script, str(warehouse), kind, pattern],
                          capture_output=True, text=True, timeout=timeout)


def report_of(process: subprocess.CompletedProcess) -> dict:
    return json.loads(process.stdout.strip().splitlines()[-1])


SEND_COLUMNS = ("serial_no, phone_number, fee, session_context, code, message, iso_code, send_time, sms_sdk_app_id, "
                "template_id, sign_name")


def keys_loaded_twice(con, table: str = "raw.sends") -> list:
    """Record keys with more than one row: SerialNo and number (a failed send: its content);
    SerialNo and ConversionTime."""
    if table == "raw.conversions":
        return con.execute("select serial_no, conversion_time from raw.conversions group by all having count(*) > 1").fetchall()
    return con.execute(
        "select serial_no, phone_number from raw.sends where coalesce(trim(serial_no), '') <> '' "
        "group by all having count(*) > 1 "
        f"union all select serial_no, phone_number from (select {SEND_COLUMNS} from raw.sends "
        "where coalesce(trim(serial_no), '') = '' group by all having count(*) > 1)"
    ).fetchall()


def serials(con, path=None) -> list[str]:
    """SerialNo of the rows of raw.sends (of one file), in the order they were inserted."""
    where, params = ("where source_file = ?", [str(path)]) if path is not None else ("", [])
    return [row[0] for row in con.execute(f"select serial_no from raw.sends {where} order by rowid", params).fetchall()]


def count(con, table: str) -> int:
    return con.execute(f"select count(*) from {table}").fetchone()[0]
