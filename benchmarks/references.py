"""The reference paths of the end-to-end comparison (benchmarks/compare.py), each run on the same
generated input as smsledger, in a fresh process:

    python -m benchmarks.references PATH DATA_DIR WORK_DIR

PATH is one of:
  dlt_parquet   dlt (the `bench` extra) loading the receipts as Python dicts with
                loader_file_format="parquet" into DuckDB: load only, no dedupe, no normalization;
  dlt_pyarrow   dlt loading the same receipts as pyarrow tables (one per 500 pages) into DuckDB;
  polars_duckdb a bare path with our normalization and dedupe: each group of 500 pages into one
                polars frame, record keys, E.164 numbers and UTC times (pipelines/normalize), an
                anti join on the key, insert into DuckDB; then the sends log, one file at a time,
                normalized the same way. No spool ledger, no quarantine, no staging per day.

Each prints one JSON line: the rows it stored.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson

GROUP = 500  # pages per frame or table, as the loader builds its frames

RECEIPT_SCHEMA = {"SerialNo": "str", "PhoneNumber": "str", "CountryCode": "str", "SubscriberNumber": "str",
                  "ReportStatus": "str", "Description": "str", "UserReceiveTime": "int", "SessionContext": "str"}


def _pages(data: Path) -> list[Path]:
    return sorted((data / "spool" / "ready").iterdir())


def _records(path: Path) -> list[dict]:
    return orjson.loads(path.read_bytes())["Response"]["PullSmsSendStatusSet"]


def _groups(data: Path) -> Iterator[list[dict]]:
    pages = _pages(data)
    for i in range(0, len(pages), GROUP):
        yield [r for page in pages[i:i + GROUP] for r in _records(page)]


def dlt_path(data: Path, work: Path, *, arrow: bool) -> int:
    import dlt
    import pyarrow as pa

    schema = pa.schema([(name, pa.int64() if kind == "int" else pa.string()) for name, kind in RECEIPT_SCHEMA.items()])

    @dlt.resource(name="send_status", write_disposition="append")
    def receipts():
        for group in _groups(data):
            if arrow:
                yield pa.Table.from_pylist(group, schema=schema)
            else:
                yield group

    pipeline = dlt.pipeline(pipeline_name=f"bench_{'arrow' if arrow else 'parquet'}", pipelines_dir=str(work / "dlt"),
                            destination=dlt.destinations.duckdb(str(work / "dlt.duckdb")), dataset_name="raw")
    pipeline.run(receipts(), loader_file_format="parquet")
    with pipeline.sql_client() as client:
        return client.execute_sql("select count(*) from send_status")[0][0]


def polars_duckdb(data: Path, work: Path) -> int:
    import duckdb
    import polars as pl

    from pipelines.normalize.phones import normalize_phones
    from pipelines.normalize.timestamps import unix_seconds_to_utc

    con = duckdb.connect(str(work / "bare.duckdb"))
    con.execute("create table receipts (record_key varchar, serial_no varchar, phone_number varchar, "
                "country_code varchar, subscriber_number varchar, report_status varchar, description varchar, "
                "user_receive_time bigint, session_context varchar, phone_e164 varchar, iso_code varchar, "
                "phone_valid boolean, receive_at timestamptz, receive_time_flag varchar)")
    schema = {name: (pl.Int64 if kind == "int" else pl.Utf8) for name, kind in RECEIPT_SCHEMA.items()}
    for group in _groups(data):
        frame = pl.from_dicts(group, schema=schema).rename(
            {"SerialNo": "serial_no", "PhoneNumber": "phone_number", "CountryCode": "cc_in",
             "SubscriberNumber": "subscriber_number", "ReportStatus": "report_status", "Description": "description",
             "UserReceiveTime": "user_receive_time", "SessionContext": "session_context"})
        frame = unix_seconds_to_utc(frame, "user_receive_time", out="receive_at", flag="receive_time_flag")
        frame = frame.with_columns(record_key=pl.concat_str(
            [pl.col("serial_no"), pl.col("report_status").fill_null(""),
             pl.col("receive_at").dt.epoch("s").cast(pl.Utf8).fill_null(pl.col("user_receive_time").cast(pl.Utf8))],
            separator="|"))
        frame = normalize_phones(frame, "phone_number", "cc_in", subscriber_number="subscriber_number")
        frame = frame.rename({"cc_in": "raw_cc"}).drop("country_code").rename({"raw_cc": "country_code"})
        frame = frame.unique("record_key", keep="first", maintain_order=True)
        con.register("incoming", frame)
        con.execute("insert into receipts by name select i.* from incoming i anti join receipts r using (record_key)")
        con.unregister("incoming")
    con.execute("create table sends as select * from (select null::varchar as serial_no) where false")
    first = True
    for path in sorted((data / "sends").iterdir()):
        sends = pl.read_ndjson(path, infer_schema_length=None)
        sends = unix_seconds_to_utc(sends, "SendTime", out="sent_at", flag="sent_at_flag")
        sends = normalize_phones(sends, "PhoneNumber")
        con.register("incoming", sends)
        if first:
            con.execute("create or replace table sends as select * from incoming")
            first = False
        else:
            con.execute("insert into sends by name select * from incoming")
        con.unregister("incoming")
    return con.execute("select count(*) from receipts").fetchone()[0]


def main() -> None:
    path, data, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    work.mkdir(parents=True, exist_ok=True)
    if path == "dlt_parquet":
        rows = dlt_path(data, work, arrow=False)
    elif path == "dlt_pyarrow":
        rows = dlt_path(data, work, arrow=True)
    elif path == "polars_duckdb":
        rows = polars_duckdb(data, work)
    else:
        raise SystemExit(f"unknown path {path!r}")
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
