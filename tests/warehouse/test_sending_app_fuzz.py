"""A mutation fuzzer of the sending application's file readers: good NDJSON, CSV and Parquet sends
logs, damaged by bit flips, truncation, inserted and deleted bytes, duplicated lines and values of
the wrong type, are loaded (through one parser process, as a call of load_source_files does).

For every damaged file:
- nothing escapes: the loading process never dies nor raises; a parser that dies is a finding
  for a text file (polars must not abort on text) and allowed for Parquet (the reason it runs in
  a child process);
- no record key is loaded twice, no quarantine row is there twice, and reading the file again
  from its start adds nothing;
- a fresh warehouse loads every good line that the damage did not touch (text files; in CSV
  unless the damage added or removed a quote, which spoils what follows it), and counts each
  record once: rows + duplicates + quarantined = records;
- written over the good file that was loaded before (a rewrite), it deletes none of its rows;
- read in two steps (a part written before the rest, as a live log), it loads what one read
  of the whole loads.

The test runs a few dozen cases per format; for thousands:

    .venv/bin/python tests/warehouse/test_sending_app_fuzz.py --cases 3000 [--seed 1] [--format ndjson]
"""

from __future__ import annotations

import argparse
import collections
import csv
import dataclasses
import io
import os
import random
import re
import sys
import time
from pathlib import Path

import orjson
import polars as pl
import pytest

from pipelines.warehouse import sending_app
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.sending_app_reader import ParserProcess

sys.path.insert(0, str(Path(__file__).parent))
from sending_app_files import SEND_COLUMNS, SEND_FIELDS, csv_text, failed_send, keys_loaded_twice, send  # noqa: E402

TEXTS = ["send success", 'with a comma, and "quotes"', "退订回T", "back\\slash | pipe", "  spaces  ", "", "tab\tinside",
         "emoji 😀", "{\"json\": 1}"]
BAD_STARTS = b"\n\r\"',{}[]:\\\x00\xff\xef\xbb\xbf0123456789-tfn "


@dataclasses.dataclass
class Damage:
    """What a mutation did: the byte ranges of the good file it touched (in that file's
    coordinates) and whether it added or removed a quote (which, in CSV, spoils what follows)."""

    name: str
    touched: list[tuple[int, int]]
    quotes: bool = False


@dataclasses.dataclass
class Findings:
    cases: int = 0
    parser_deaths: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    problems: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    failures: list[str] = dataclasses.field(default_factory=list)


def good_records(rng: random.Random, case: int) -> list[dict]:
    records = []
    for n in range(rng.randint(1, 40)):
        record = failed_send(case * 1000 + n) if rng.random() < 0.15 else send(case * 1000 + n)
        record["Message"] = rng.choice(TEXTS) if record["Code"] == "Ok" else record["Message"]
        record["SessionContext"] = rng.choice(TEXTS)
        records.append(record)
    return records


def render(file_format: str, records: list[dict]) -> bytes:
    if file_format == "ndjson":
        return b"".join(orjson.dumps(record) + b"\n" for record in records)
    if file_format == "csv":
        return csv_text(records, SEND_FIELDS).encode()
    out = io.BytesIO()
    pl.DataFrame(records, schema={field: pl.Int64 if field in ("Fee", "SendTime") else pl.String
                                  for field in SEND_FIELDS}).write_parquet(out)
    return out.getvalue()


def line_spans(data: bytes) -> list[tuple[int, int]]:
    spans, start = [], 0
    for end in range(len(data)):
        if data[end] == 0x0A:
            spans.append((start, end + 1))
            start = end + 1
    if start < len(data):
        spans.append((start, len(data)))
    return spans


def mutate(rng: random.Random, file_format: str, data: bytes, records: list[dict]) -> tuple[bytes, list[Damage]]:
    """One to three mutations, applied from the end of the file backwards so that each one's
    position is still in the good file's coordinates."""
    if file_format == "parquet" and rng.random() < 0.3:
        return typed_parquet(rng, records), [Damage("wrong column types", [(0, len(data))])]
    pages = [at for at in range(len(data) - 3) if data[at:at + 2] == b"\x2c\x15"]
    if file_format == "parquet" and pages and rng.random() < 0.15:
        # A data page header that claims -1 values: polars aborts on some of these.
        at = rng.choice(pages) + 2
        return data[:at] + b"\x01" + data[at + 1:], [Damage("page header", [(at, at + 1)])]
    damages: list[Damage] = []
    positions = sorted((rng.randrange(len(data) + 1) for _ in range(rng.randint(1, 3))), reverse=True)
    for position in positions:
        kind = rng.choice(["flip", "truncate", "insert", "delete", "duplicate", "wrong type"]
                          if file_format != "parquet" else ["flip", "flip", "truncate", "insert", "delete"])
        if kind == "flip" and position < len(data):
            flipped = data[position] ^ (1 << rng.randrange(8))
            quotes = 0x22 in (data[position], flipped)
            data = data[:position] + bytes([flipped]) + data[position + 1:]
            damages.append(Damage("flip", [(position, position + 1)], quotes))
        elif kind == "truncate":
            damages.append(Damage("truncate", [(position, len(data) + 1)], b'"' in data[position:]))
            data = data[:position]
        elif kind == "insert":
            inserted = bytes(rng.choice(BAD_STARTS) for _ in range(rng.randint(1, 8)))
            data = data[:position] + inserted + data[position:]
            damages.append(Damage("insert", [(position, position)], b'"' in inserted))
        elif kind == "delete":
            end = min(len(data), position + rng.randint(1, 20))
            damages.append(Damage("delete", [(position, end)], b'"' in data[position:end]))
            data = data[:position] + data[end:]
        elif kind == "duplicate":
            spans = [span for span in line_spans(data) if span[1] <= position] or line_spans(data)
            if spans:
                start, end = rng.choice(spans)
                copy = data[start:end] if data[start:end].endswith(b"\n") else data[start:end] + b"\n"
                at = max(s[1] for s in spans if s[1] <= position) if any(s[1] <= position for s in spans) else 0
                data = data[:at] + copy * rng.randint(1, 3) + data[at:]
                damages.append(Damage("duplicate", [(at, at)]))
        elif kind == "wrong type":
            data, damage = wrong_type(rng, file_format, data, position)
            damages.append(damage)
    return data, damages


def wrong_type(rng: random.Random, file_format: str, data: bytes, position: int) -> tuple[bytes, Damage]:
    """The line around `position` with one value of the wrong type (text formats)."""
    spans = [span for span in line_spans(data) if span[0] <= position] or line_spans(data)
    start, end = spans[-1] if spans else (0, len(data))
    line = data[start:end].rstrip(b"\n")
    if file_format == "ndjson":
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            return data, Damage("wrong type (not JSON)", [])
        if type(record) is not dict:
            return data, Damage("wrong type (not an object)", [])
        field = rng.choice(SEND_FIELDS)
        record[field] = rng.choice([12345, -1, 1.5, [record.get(field)], {"v": record.get(field)}, True,
                                    "-7", "x" if field in ("Fee", "SendTime") else None])
        replaced = orjson.dumps(record)
    else:
        values = next(csv.reader([line.decode("utf-8", "replace")]), [])
        if len(values) != len(SEND_FIELDS) or start == 0:
            return data, Damage("wrong type (not a record)", [])
        values[rng.choice([2, 7])] = rng.choice(["-1", "1.5", "x", "", "99999999999999999999999"])
        out = io.StringIO()
        csv.writer(out, lineterminator="").writerow(values)
        replaced = out.getvalue().encode()
    return data[:start] + replaced + data[start + len(line):], Damage("wrong type", [(start, end)])


def typed_parquet(rng: random.Random, records: list[dict]) -> bytes:
    """The records with one column of another type, or with negative and null values."""
    frame = pl.DataFrame(records)
    choice = rng.randrange(4)
    if choice == 0:
        frame = frame.with_columns(pl.int_range(0, frame.height).alias("SerialNo"))
    elif choice == 1:
        frame = frame.with_columns(pl.col("PhoneNumber").map_elements(lambda v: [v], return_dtype=pl.List(pl.String)))
    elif choice == 2:
        frame = frame.with_columns(pl.col("SendTime") * -1)
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias("Code"))
    out = io.BytesIO()
    frame.write_parquet(out)
    return out.getvalue()


def untouched_good(data: bytes, file_format: str, records: list[dict], damages: list[Damage]) -> list[dict]:
    """The good records whose lines no damage came near (a byte either side included)."""
    if file_format == "parquet" or (file_format == "csv" and any(d.quotes for d in damages)):
        return []
    spans = line_spans(data)[1:] if file_format == "csv" else line_spans(data)
    touched = [(lo - 1, hi + 1) for damage in damages for lo, hi in damage.touched]
    if file_format == "csv" and any(lo <= line_spans(data)[0][1] for lo, _ in touched):
        return []  # the header was touched
    return [record for record, (start, end) in zip(records, spans)
            if not any(lo < end and start < hi for lo, hi in touched)]


class Harness:
    """One parser process for all the cases, and a folder for their files."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.parser = ParserProcess(sending_app.READ_TIMEOUT_SECONDS)
        self.findings = Findings()

    def load(self, con, path: Path) -> sending_app.SourceReport:
        report = sending_app.SourceReport("sends")
        sending_app._load_paths(con, "sends", [str(path)], self.parser, report)
        for problem in report.problems:
            cause = re.sub(r"\d+", "N", problem.split(": ", 1)[1].split("; first at row N: ")[-1])
            if "parser process" in cause:
                self.findings.parser_deaths[(path.suffix, cause.split("(", 1)[-1][:90])] += 1
            self.findings.problems[(path.suffix, re.sub(r"\d+", "N", cause)[:110])] += 1
        return report

    def write(self, path: Path, data: bytes, *, settled: bool = True) -> Path:
        path.write_bytes(data)
        if settled:
            past = time.time() - 60
            os.utime(path, (past, past))
        return path

    def case(self, rng: random.Random, case: int, file_format: str) -> None:
        records = good_records(rng, case)
        good = render(file_format, records)
        damaged, damages = mutate(rng, file_format, good, records)
        name = f"case{case}.{file_format}"
        what = f"case {case} ({file_format}, {', '.join(d.name for d in damages)})"
        self.findings.cases += 1

        # A fresh warehouse loads the damaged file.
        with open_warehouse(":memory:") as con:
            path = self.write(self.folder / name, damaged)
            report = self.load(con, path)
            loaded = set(con.execute("select serial_no, phone_number, send_time from raw.sends").fetchall())
            quarantined = set(con.execute("select record_index, payload from raw.quarantine").fetchall())
            self.check(con, what, path)
            if not any("cannot be read" in problem for problem in report.problems):
                self.expect(report.records == report.rows + report.duplicates + report.quarantined,
                            f"{what}: {report.records} records, {report.rows} rows + {report.duplicates} duplicates "
                            f"+ {report.quarantined} quarantined")
            for record in untouched_good(good, file_format, records, damages):
                self.expect((record["SerialNo"], record["PhoneNumber"], record["SendTime"]) in loaded,
                            f"{what}: lost the untouched good record {record['SerialNo'] or record['PhoneNumber']}")

        # Written over the good file once loaded, it deletes none of its rows.
        with open_warehouse(":memory:") as con:
            path = self.write(self.folder / f"rewrite-{name}", good)
            self.load(con, path)
            before = set(con.execute(f"select {SEND_COLUMNS} from raw.sends").fetchall())
            self.write(path, damaged)
            self.load(con, path)
            after = set(con.execute(f"select {SEND_COLUMNS} from raw.sends").fetchall())
            self.expect(before <= after, f"{what}: a rewrite deleted {len(before - after)} rows")
            self.check(con, what, path)

        # Read in two steps as a live log: the same rows and quarantine rows as one read.
        if file_format == "parquet" or (file_format == "csv" and any(d.quotes for d in damages)):
            return
        with open_warehouse(":memory:") as con:
            path = self.write(self.folder / f"live-{name}", damaged[:rng.randrange(len(damaged) + 1)], settled=False)
            self.load(con, path)
            self.write(path, damaged)
            self.load(con, path)
            self.expect(set(con.execute("select serial_no, phone_number, send_time from raw.sends").fetchall()) == loaded,
                        f"{what}: two reads loaded other rows than one")
            self.expect(set(con.execute("select record_index, payload from raw.quarantine").fetchall()) == quarantined,
                        f"{what}: two reads quarantined other records than one")
            self.check(con, what, path)

    def check(self, con, what: str, path: Path) -> None:
        """No key twice, no quarantine row twice, and reading the file again from its start adds nothing."""
        twice = keys_loaded_twice(con)
        self.expect(twice == [], f"{what}: {len(twice)} keys loaded twice")
        repeated = con.execute("select count(*) - count(distinct (batch_id, record_index, payload, reason)) "
                               "from raw.quarantine").fetchone()[0]
        self.expect(repeated == 0, f"{what}: {repeated} quarantine rows twice")
        counts = con.execute("select (select count(*) from raw.sends), (select count(*) from raw.quarantine)").fetchone()
        con.execute("delete from raw.source_files where source_file = ?", [str(path)])
        self.load(con, path)
        again = con.execute("select (select count(*) from raw.sends), (select count(*) from raw.quarantine)").fetchone()
        self.expect(again == counts, f"{what}: reading it again changed (rows, quarantine rows) {counts} -> {again}")

    def expect(self, condition: bool, failure: str) -> None:
        if not condition:
            self.findings.failures.append(failure)


def fuzz(folder: Path, cases: int, seed: int, formats: list[str]) -> Findings:
    harness = Harness(folder)
    try:
        for case in range(cases):
            rng = random.Random(seed * 1_000_003 + case)
            file_format = formats[case % len(formats)]
            try:
                harness.case(rng, case, file_format)
            except Exception as exc:  # a crash of the loading process is the worst finding
                harness.findings.failures.append(f"case {case} ({file_format}): {type(exc).__name__}: {exc}")
    finally:
        harness.parser.close()
    return harness.findings


@pytest.mark.parametrize("file_format", ["ndjson", "csv", "parquet"])
def test_damaged_files_never_crash_lose_or_duplicate(tmp_path, file_format):
    findings = fuzz(tmp_path, cases=30, seed=20261201, formats=[file_format])

    assert findings.failures == []
    if file_format != "parquet":
        assert not findings.parser_deaths


def main() -> None:
    parser = argparse.ArgumentParser(description="Mutation fuzzing of the sending application's file readers.")
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--format", choices=["ndjson", "csv", "parquet"], action="append")
    ns = parser.parse_args()
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        findings = fuzz(Path(folder), ns.cases, ns.seed, ns.format or ["ndjson", "csv", "parquet"])
    print(f"{findings.cases} cases in {time.perf_counter() - started:.0f}s; {len(findings.failures)} failures")
    for failure in findings.failures[:40]:
        print("FAIL", failure)
    for (suffix, cause), count in sorted(findings.parser_deaths.items()):
        print(f"parser died: {suffix} x{count}: {cause}")
    for (suffix, cause), count in findings.problems.most_common(25):
        print(f"problem: {suffix} x{count}: {cause}")


if __name__ == "__main__":
    main()
