"""`smsledger sql` as a user runs it: it reads the warehouse and nothing else, one statement at a
time; every DuckDB type prints in every format; large results stream; refusals are one line."""

import csv
import io
import json
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from support import REPO, smsledger

from pipelines.warehouse.db import connect


def make_warehouse(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("create schema marts; create table marts.t as select range as n from range(5)")
    con.close()
    return path


@pytest.fixture
def warehouse(tmp_path):
    return make_warehouse(tmp_path / "w.duckdb")


def sql(warehouse: Path, query: str, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return smsledger("sql", query, *args, env={"SMSLEDGER_WAREHOUSE": str(warehouse), **kwargs.pop("env", {})},
                     **kwargs)


def assert_refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Exit status 1, nothing printed, one line on stderr holding `words`; returns the line."""
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smsledger sql: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def tables(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return [name for (name,) in con.execute("select table_name from duckdb_tables() order by 1").fetchall()]
    finally:
        con.close()


# -- it reads the warehouse and nothing else ------------------------------------------------------


def test_a_refused_copy_leaves_no_file(warehouse, tmp_path):
    target = tmp_path / "out.csv"
    assert_refused(sql(warehouse, f"copy (select * from marts.t) to '{target}'"), "COPY")
    assert not target.exists()
    # as users found it: a copy of a warehouse overwritten with 7 bytes
    copy = shutil.copy(warehouse, tmp_path / "copy.duckdb")
    before = copy.read_bytes()
    assert_refused(sql(warehouse, f"copy (select 'x') to '{copy}' (format csv, header false)"), "COPY")
    assert copy.read_bytes() == before
    # EXPLAIN ANALYZE runs the statement it explains: the connection itself refuses the file
    assert_refused(sql(warehouse, f"explain analyze copy (select 1) to '{target}'"), "refused", str(target))
    assert not target.exists()


def test_a_refused_attach_leaves_the_other_database_unchanged(warehouse, tmp_path):
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("create table keep as select 42 as answer")
    con.close()
    before = other.read_bytes()
    assert_refused(sql(warehouse, f"attach '{other}' as other (read_only false)"), "ATTACH")
    script = (f"attach '{other}' as other (read_only false); create table other.made as select 1; "
              "drop table other.keep")
    assert_refused(sql(warehouse, script), "one statement at a time", "3")
    assert other.read_bytes() == before
    assert tables(other) == ["keep"]


@pytest.mark.parametrize("reader", ["read_csv('{}')", "read_csv_auto('{}')", "read_text('{}')", "read_blob('{}')",
                                    "glob('{}')", "read_json('{}')", "sniff_csv('{}')"])
def test_files_outside_the_warehouse_are_not_read(warehouse, tmp_path, reader):
    secret = tmp_path / "secret.csv"
    secret.write_text("name,value\npassword,hunter2\n")
    result = sql(warehouse, f"select * from {reader.format(secret)}")
    assert_refused(result, "refused", "nothing else")
    assert "hunter2" not in result.stdout + result.stderr


def test_system_files_and_replacement_scans_are_not_read(warehouse, tmp_path):
    passwd = sql(warehouse, "select * from read_text('/etc/passwd')")
    assert_refused(passwd, "refused", "/etc/passwd")
    assert "root:" not in passwd.stdout + passwd.stderr
    secret = tmp_path / "secret.csv"
    secret.write_text("name,value\npassword,hunter2\n")
    scan = sql(warehouse, f"select * from '{secret}'")  # a file name as a table name
    assert scan.returncode == 1 and "hunter2" not in scan.stdout + scan.stderr


def test_extensions_are_neither_installed_nor_loaded_and_no_network_is_tried(warehouse, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        for query, words in [("install httpfs", ["INSTALL"]), (f"install httpfs from '{url}'", ["INSTALL"]),
                             ("load httpfs", ["LOAD"]), ("force install httpfs", ["INSTALL"]),
                             (f"select * from read_csv('{url}/data.csv')", ["refused", url]),
                             (f"select * from read_parquet('{url}/data.parquet')", ["refused", url])]:
            assert_refused(sql(warehouse, query, env={"HOME": str(home)}), *words)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came
    assert list(home.iterdir()) == []  # no ~/.duckdb/extensions made either


@pytest.mark.parametrize("query, kind", [
    ("drop table marts.t", "DROP"),
    ("delete from marts.t", "DELETE"),
    ("create temp table x as select 1", "CREATE"),
    ("set threads = 1", "SET"),
    ("set enable_external_access = true", "SET"),
    ("pragma enable_profiling", "PRAGMA"),
    ("call checkpoint()", "CALL"),
    ("begin transaction", "BEGIN"),
    ("export database 'dump'", "EXPORT"),
])
def test_statements_that_do_not_read_are_refused_by_their_kind(warehouse, query, kind):
    assert_refused(sql(warehouse, query), f"refused: {kind}", "only reads the warehouse")
    assert tables(warehouse) == ["t"]


def test_one_statement_at_a_time(warehouse):
    assert_refused(sql(warehouse, "select 1; select 2"), "one statement at a time", "2")
    assert_refused(sql(warehouse, "select 1; drop table marts.t"), "one statement at a time")
    assert tables(warehouse) == ["t"]
    # DuckDB turns a PIVOT without its values into CREATE TYPE + SELECT: say what to write instead
    assert_refused(sql(warehouse, "pivot marts.t on n"), "PIVOT", "IN (...)")


@pytest.mark.parametrize("query", ["", "   \n\t", "-- only a comment", "/* nothing */", ";"])
def test_an_empty_query_is_refused(warehouse, query):
    assert_refused(sql(warehouse, query), "the query is empty")


@pytest.mark.parametrize("query, first_line", [
    ("with small as (select n from marts.t where n < 2) select count(*) as c from small", "c"),
    ("from marts.t select max(n) as top", "top"),
    ("values (1, 'a')", "col0,col1"),
    ("describe marts.t", "column_name,column_type,null,key,default,extra"),
    ("show tables", "name"),
    ("summarize marts.t", "column_name,column_type,min,max,approx_unique,avg,std,q25,q50,q75,count,null_percentage"),
    ("pragma table_info('marts.t')", "cid,name,type,notnull,dflt_value,pk"),
    ("pragma version", "library_version,source_id,codename"),
    ("explain select * from marts.t", "explain_key,explain_value"),
    ("explain analyze select * from marts.t", "explain_key,explain_value"),
    ("pivot marts.t on n in (0, 1)", "0,1"),
    # the connection's macros still work after the lock
    ("select unix_seconds(1700000000123) as s, unix_seconds(1700000000) as t", "s,t"),
])
def test_statements_that_read_run(warehouse, query, first_line):
    result = sql(warehouse, query, "--format", "csv")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout.splitlines()[0] == first_line
    if first_line == "s,t":
        assert result.stdout.splitlines()[1] == "1700000000,1700000000"


def test_the_reading_connection_itself_refuses_what_is_not_the_warehouse(warehouse, tmp_path):
    """The rules hold where the connection is made, whatever statement reaches it."""
    target, other = tmp_path / "out.csv", tmp_path / "other.duckdb"
    con = connect(warehouse, read_only=True)
    try:
        for statement in [f"copy (select 1) to '{target}'", f"attach '{other}' as other",
                          "select * from read_text('/etc/passwd')", "install httpfs", "load httpfs",
                          "set enable_external_access = true", "set lock_configuration = false",
                          "set autoload_known_extensions = true", "set enable_progress_bar = true",
                          "insert into marts.t values (9)"]:
            with pytest.raises(duckdb.Error):
                con.execute(statement)
        assert con.execute("select unix_seconds(1700000000123), current_setting('TimeZone')").fetchone() == (1700000000, "UTC")
        assert con.execute("select count(*) from marts.t").fetchone() == (5,)
    finally:
        con.close()
    assert not target.exists() and not other.exists()


# -- what it prints -------------------------------------------------------------------------------


def test_formats_and_a_bad_query(warehouse):
    table = sql(warehouse, "select sum(n) as total from marts.t")
    assert table.returncode == 0 and table.stderr == ""
    assert table.stdout.splitlines() == [" total", "-------", "    10", "(1 row)"]
    as_csv = sql(warehouse, "select n from marts.t order by n", "--format", "csv")
    assert as_csv.stdout.splitlines() == ["n", "0", "1", "2", "3", "4"]
    as_json = sql(warehouse, "select n from marts.t where n < 2 order by n", "--format", "json")
    assert json.loads(as_json.stdout) == [{"n": 0}, {"n": 1}]
    nothing = sql(warehouse, "select n from marts.t where n < 0", "--format", "json")
    assert json.loads(nothing.stdout) == []
    assert sql(warehouse, "select n from marts.t where n < 0").stdout.splitlines()[-1] == "(0 rows)"
    assert sql(warehouse, "select n from marts.t where n < 0", "--format", "csv").stdout == "n\n"
    assert_refused(sql(warehouse, "select nope from marts.t"), "nope")


EVERY_TYPE = r"""
select interval '1 month 2 days 3 hours' as iv, 123.45::decimal(10, 2) as dec,
       170141183460469231731687303715884105727::hugeint as huge, 18446744073709551616::uhugeint as uhuge,
       '6f1c0f5e-6c3b-4c1a-9f7a-2b8f5d3e4a11'::uuid as id, '\xAA\x00ab'::blob as bytes,
       '12:34:56'::time as t, '12:34:56+02'::timetz as ttz, [1, 2, null] as list, {'a': 1, 'b': 'x'} as struct,
       map {'k': 1, 'j': 2} as map, 'ok'::enum('sad', 'ok') as mood, '{"x": [1, 2]}'::json as doc,
       '2024-01-02 03:04:05.123456'::timestamp as ts, '2024-01-02 03:04:05+00'::timestamptz as tstz,
       '2024-01-02'::date as day, '10110'::bit as bits, union_value(num := 2)::union(num int, str varchar) as un,
       [1, 2]::int[2] as arr, 'nan'::double as nan, [1.5, 'inf'::double] as floats, null as nothing, '' as empty,
       'a' || chr(10) || 'b,"c"' as text, '退订' as reply, 1 as dup, 2 as dup
"""


def test_every_duckdb_type_prints_in_table_csv_and_json(warehouse):
    as_csv = sql(warehouse, EVERY_TYPE, "--format", "csv")
    assert as_csv.returncode == 0 and as_csv.stderr == "", as_csv.stderr
    header, row = list(csv.reader(io.StringIO(as_csv.stdout)))
    values = dict(zip(header[:-2], row[:-2]))
    assert values == {
        "iv": "1 month 2 days 03:00:00", "dec": "123.45", "huge": "170141183460469231731687303715884105727",
        "uhuge": "18446744073709551616", "id": "6f1c0f5e-6c3b-4c1a-9f7a-2b8f5d3e4a11", "bytes": r"\xAA\x00ab",
        "t": "12:34:56", "ttz": "12:34:56+02", "list": "[1, 2, NULL]", "struct": "{'a': 1, 'b': x}",
        "map": "{k=1, j=2}", "mood": "ok", "doc": '{"x": [1, 2]}', "ts": "2024-01-02 03:04:05.123456",
        "tstz": "2024-01-02 03:04:05+00", "day": "2024-01-02", "bits": "10110", "un": "2", "arr": "[1, 2]",
        "nan": "nan", "floats": "[1.5, inf]", "nothing": "", "empty": "", "text": 'a\nb,"c"', "reply": "退订",
    }
    assert header[-2:] == ["dup", "dup"] and row[-2:] == ["1", "2"]
    assert ',,"",' in as_csv.stdout  # NULL is nothing, the empty string is ""

    as_json = sql(warehouse, EVERY_TYPE, "--format", "json")
    assert as_json.returncode == 0 and as_json.stderr == "", as_json.stderr
    [obj] = json.loads(as_json.stdout, parse_float=Decimal)
    assert obj == {
        "iv": "1 month 2 days 03:00:00", "dec": Decimal("123.45"), "huge": 170141183460469231731687303715884105727,
        "uhuge": 18446744073709551616, "id": "6f1c0f5e-6c3b-4c1a-9f7a-2b8f5d3e4a11", "bytes": r"\xAA\x00ab",
        "t": "12:34:56", "ttz": "12:34:56+02", "list": [1, 2, None], "struct": {"a": 1, "b": "x"},
        "map": {"k": 1, "j": 2}, "mood": "ok", "doc": {"x": [1, 2]}, "ts": "2024-01-02 03:04:05.123456",
        "tstz": "2024-01-02 03:04:05+00", "day": "2024-01-02", "bits": "10110", "un": {"num": 2}, "arr": [1, 2],
        "nan": None, "floats": [Decimal("1.5"), None], "nothing": None, "empty": "", "text": 'a\nb,"c"',
        "reply": "退订", "dup": 1, "dup_1": 2,
    }

    table = sql(warehouse, EVERY_TYPE)
    assert table.returncode == 0 and table.stderr == "", table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 4 and lines[-1] == "(1 row)"
    header_cells = [cell.strip() for cell in lines[0].split(" | ")]
    cells = [cell.strip() for cell in lines[2].split(" | ")]
    assert header_cells[:3] == ["iv", "dec", "huge"] and len(cells) == len(header_cells) == 27
    shown = dict(zip(header_cells[:-2], cells[:-2]))
    assert shown == {**values, "nothing": "NULL", "text": r'a\nb,"c"'}
    # columns line up, Chinese characters taking two columns
    assert lines[0].index("| reply") == lines[2].index("| 退订")


def test_the_table_shows_the_first_rows_and_counts_the_rest(warehouse):
    table = sql(warehouse, "select range as n, repeat('é', 100) as long from range(1000)")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert len(lines) == 2 + 100 + 1
    assert lines[2].split() == ["0", "|", "é" * 59 + "…"]
    assert lines[-1] == "(1,000 rows; 900 not shown: --format csv or --format json prints them all)"
    assert len(sql(warehouse, "select range from range(1000)", "--format", "csv").stdout.splitlines()) == 1001
    assert len(json.loads(sql(warehouse, "select range from range(1000)", "--format", "json").stdout)) == 1000


MEASURED = ("import resource, sys\n"
            "from pipelines.app.cli import main\n"
            "status = main(sys.argv[1:])\n"
            "sys.stdout.flush()\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, file=sys.stderr)\n"
            "sys.exit(status)\n")


def peak_mb(warehouse: Path, query: str, fmt: str, out: Path) -> int:
    """The peak memory (MB) of `smsledger sql QUERY --format FMT`, its output going to `out`."""
    with out.open("w") as stdout:
        done = subprocess.run([sys.executable, "-c", MEASURED, "sql", query, "--format", fmt], cwd=REPO,
                              env={"SMSLEDGER_WAREHOUSE": str(warehouse), "PATH": "/usr/bin:/bin"},
                              stdout=stdout, stderr=subprocess.PIPE, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stderr.strip().splitlines()[-1])


def test_large_results_stream_in_batches(warehouse, tmp_path):
    """About 185 MB of CSV: the command holds a batch of it, not the result (which would take
    more memory than the text itself); measured against the same command printing one value."""
    out = tmp_path / "out"
    baseline = peak_mb(warehouse, "select 1", "csv", out)
    big = "select range as n, repeat('x', 300) as pad from range(600000)"
    peak = {"csv": peak_mb(warehouse, big, "csv", out)}
    size_mb = out.stat().st_size // 1_000_000
    with out.open() as lines:
        assert size_mb > 180 and sum(1 for _ in lines) == 600_001
    peak |= {fmt: peak_mb(warehouse, big, fmt, out) for fmt in ("json", "table")}
    assert out.read_text().endswith("(600,000 rows; 599,900 not shown: --format csv or --format json prints them all)\n")
    assert all(mb - baseline < size_mb / 2 for mb in peak.values()), (baseline, peak, size_mb)


def test_a_reader_that_stops_early_is_no_error(warehouse):
    """`smsledger sql ... --format csv | head -1`: no traceback about a broken pipe."""
    process = subprocess.Popen([sys.executable, "-m", "pipelines.app.cli", "sql", "select * from range(1000000)",
                                "--format", "csv"], cwd=REPO, env={"SMSLEDGER_WAREHOUSE": str(warehouse), "PATH": "/usr/bin:/bin"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "range\n"
    process.stdout.close()
    assert process.wait(timeout=120) == 0
    assert process.stderr.read() == ""


def test_no_progress_bar_lands_in_the_output(warehouse):
    result = sql(warehouse, "select current_setting('enable_progress_bar') as bar", "--format", "csv")
    assert result.stdout == "bar\nfalse\n"


# -- where the warehouse is, and waiting for a writer ---------------------------------------------


def test_a_missing_warehouse_says_what_to_do(tmp_path):
    result = smsledger("sql", "select 1", env={"SMSLEDGER_WAREHOUSE": str(tmp_path / "none.duckdb")}, cwd=tmp_path)
    assert_refused(result, "no warehouse at", "make demo")


def test_after_the_demo_it_names_the_demo_warehouse_and_the_variable(tmp_path):
    make_warehouse(tmp_path / "data" / "demo" / "warehouse.duckdb")
    result = smsledger("sql", "select count(*) as n from marts.t", cwd=tmp_path)
    assert_refused(result, "no warehouse at data/warehouse.duckdb", "SMSLEDGER_WAREHOUSE=data/demo/warehouse.duckdb")
    following = smsledger("sql", "select count(*) as n from marts.t", "--format", "csv", cwd=tmp_path,
                          env={"SMSLEDGER_WAREHOUSE": "data/demo/warehouse.duckdb"})
    assert following.returncode == 0 and following.stdout == "n\n5\n"


def test_it_waits_for_a_concurrent_writer_and_says_so(warehouse):
    """A sync holds the file only for a step at a time; the query waits its turn, and says what
    it waits for once the wait passes a second."""
    writer = duckdb.connect(str(warehouse))
    writer.execute("begin; insert into marts.t values (100)")
    query = subprocess.Popen([sys.executable, "-m", "pipelines.app.cli", "sql", "select count(*) as rows from marts.t",
                              "--format", "csv"], cwd=REPO, env={"SMSLEDGER_WAREHOUSE": str(warehouse), "PATH": "/usr/bin:/bin"},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        said = query.stderr.readline()  # the writer holds the file until the query says it waits
    finally:
        writer.execute("commit")
        writer.close()
    assert said == f"smsledger sql: waiting for another process (a sync?) to release {warehouse}, up to 60s ...\n"
    out, rest = query.communicate(timeout=120)
    assert query.returncode == 0, rest
    assert out == "rows\n6\n" and rest == ""
