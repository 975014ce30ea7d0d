"""A file the user hands us can never kill a run: the files are parsed in a child process, and a
parser that aborts (a corrupt Parquet file), is killed (an out-of-memory kill) or hangs costs only
that file, with its one-line problem and a quarantine row, while the other files load."""

import os
import signal
import subprocess
import sys

import pytest

from pipelines.warehouse import sending_app
from pipelines.warehouse import sending_app_reader as reader_module
from pipelines.warehouse.db import open_warehouse
from pipelines.warehouse.sending_app import load_source_files
from sending_app_files import (
    SEND_FIELDS, corrupt_parquet, count, keys_loaded_twice, load_in_subprocess, report_of, send, serials, write_csv,
    write_ndjson,
)


def test_the_corrupt_parquet_file_kills_a_process_that_reads_it(tmp_path):
    corrupt = corrupt_parquet(tmp_path / "sends.parquet")

    died = subprocess.run([sys.executable, "-c", "import sys, polars; polars.read_parquet(sys.argv[1])", str(corrupt)],
                          capture_output=True, text=True, timeout=60)

    assert corrupt.stat().st_size < 8192
    assert died.returncode == -signal.SIGABRT, died.stderr[-500:]
    assert "memory allocation of" in died.stderr


def test_a_file_that_kills_the_parser_costs_only_that_file(tmp_path, warehouse_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_ndjson(folder / "a.ndjson", [send(n) for n in range(3)])
    corrupt = corrupt_parquet(folder / "b.parquet")
    corrupt_again = corrupt_parquet(folder / "c.parquet")  # the parser is started again after each death
    write_csv(folder / "d.csv", [send(n) for n in range(3, 6)], SEND_FIELDS)

    loaded = load_in_subprocess(warehouse_path, "sends", str(folder / "*"))

    assert loaded.returncode == 0, loaded.stderr[-2000:]
    report = report_of(loaded)
    assert (report["files"], report["loaded_files"], report["rows"], report["quarantined"]) == (4, 2, 6, 2)
    assert len(report["problems"]) == 2
    for problem, path in zip(report["problems"], (corrupt, corrupt_again)):
        assert problem.startswith(f"{path}: cannot be read, nothing loaded from it (")
        assert "SIGABRT" in problem and "memory allocation of" in problem and "\n" not in problem
    with open_warehouse(warehouse_path) as con:
        assert serials(con) == [send(n)["SerialNo"] for n in range(6)]
        assert con.execute("select batch_id, record_index from raw.quarantine order by 1").fetchall() == [
            (str(corrupt), -1), (str(corrupt_again), -1)]
        assert con.execute("select reason from raw.quarantine").fetchone()[0].startswith("file cannot be read: ")

        again = load_source_files(con, "sends", str(folder / "*"))
        assert (again.unchanged_files, again.rows, len(again.problems), count(con, "raw.quarantine")) == (2, 0, 2, 2)


def test_a_parser_killed_mid_file_loses_nothing_and_the_next_run_finishes(con, tmp_path, monkeypatch):
    # Small blocks, so that the parser is still at work (blocked on a full socket) when it is
    # killed, and small inserts, so that rows are inserted before the end of the file.
    monkeypatch.setattr(sending_app, "BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(sending_app, "ROW_GROUP_ROWS", 1000)
    monkeypatch.setattr(sending_app, "INSERT_ROWS", 1000)
    total = 20_000
    path = write_ndjson(tmp_path / "sends.ndjson", [send(n) for n in range(total)])
    parsers = []
    start, add = reader_module.ParserProcess._start, sending_app._FileLoad.add

    def start_and_remember(self):
        start(self)
        parsers.append(self)

    def add_then_kill_the_parser(self, chunk):
        add(self, chunk)
        if parsers:
            os.kill(parsers.pop().pid, signal.SIGKILL)

    monkeypatch.setattr(reader_module.ParserProcess, "_start", start_and_remember)
    monkeypatch.setattr(sending_app._FileLoad, "add", add_then_kill_the_parser)
    first = load_source_files(con, "sends", str(path))

    assert 0 < first.rows < total
    assert first.problems == [f"{path}: cannot be read past record {first.rows}, the records before it loaded "
                              "(the parser process was killed by SIGKILL)"]
    monkeypatch.setattr(sending_app._FileLoad, "add", add)
    second = load_source_files(con, "sends", str(path))

    assert (second.rows, second.records, second.problems) == (total - first.rows, total - first.rows, [])
    assert serials(con) == [send(n)["SerialNo"] for n in range(total)]
    assert keys_loaded_twice(con) == []
    assert count(con, "raw.quarantine") == 0  # the note that the file could not be read goes once it reads


def test_a_parser_that_does_not_answer_in_time_is_stopped(con, tmp_path, monkeypatch):
    monkeypatch.setattr(sending_app, "READ_TIMEOUT_SECONDS", 0.0)
    path = write_ndjson(tmp_path / "sends.ndjson", [send(n) for n in range(3)])

    report = load_source_files(con, "sends", str(path))

    assert report.problems == [f"{path}: cannot be read, nothing loaded from it "
                               "(the parser gave no answer within 0 s and was stopped)"]
    assert count(con, "raw.sends") == 0
    monkeypatch.undo()
    assert load_source_files(con, "sends", str(path)).rows == 3


@pytest.mark.parametrize("kind", ["sends", "conversions"])
def test_no_parser_is_started_when_nothing_changed(con, tmp_path, monkeypatch, kind):
    write_ndjson(tmp_path / "a.ndjson", [send(1)] if kind == "sends" else [{"SerialNo": "s", "ConversionTime": 1}])
    load_source_files(con, kind, str(tmp_path / "*.ndjson"))

    def refuse(self):
        raise AssertionError("a parser was started for an unchanged file")

    monkeypatch.setattr(reader_module.ParserProcess, "_start", refuse)

    report = load_source_files(con, kind, str(tmp_path / "*.ndjson"))

    assert (report.unchanged_files, report.loaded_files) == (1, 0)
