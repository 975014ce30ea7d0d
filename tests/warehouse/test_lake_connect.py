"""The warehouse on DuckLake with a Postgres catalog: the URI, the password kept out of it and out
of every error, the session a lake connection gets, and read-only access for `smsledger sql`.
Against a real PostgreSQL server (tests/postgres_support.py)."""

import datetime as dt
import os

import duckdb
import pytest
import postgres_support

from pipelines.config import ConfigError, LakeConfigError, LakeLocation, Settings, parse_conninfo, parse_lake_uri, redact
from pipelines.warehouse import lake
from pipelines.warehouse.db import connect

# The fixtures of tests/postgres_support.py, visible to this module's tests.
lake_location = postgres_support.lake_location
postgres = postgres_support.postgres



def test_a_lake_uri_is_read_into_conninfo_and_an_absolute_data_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    location = parse_lake_uri("ducklake:postgres:dbname=smsledger host=db.internal port=5432 user=etl", "data/lake")
    assert location.conninfo == "dbname=smsledger host=db.internal port=5432 user=etl"
    assert location.data_path == f"{tmp_path}/data/lake/"
    assert str(location) == "ducklake:postgres:dbname=smsledger host=db.internal port=5432 user=etl"
    assert parse_lake_uri("ducklake:postgres:service=lake", "s3://bucket/smsledger").data_path == "s3://bucket/smsledger/"
    assert parse_lake_uri("ducklake:postgres:dbname='my lake' user=etl").data_path is None
    assert parse_conninfo(r"dbname='it\'s' host=h") == {"dbname": "it's", "host": "h"}


@pytest.mark.parametrize("uri, cause", [
    ("ducklake:postgres:dbname=lake user=etl password=Hunter2-secret", "must not carry the password"),
    ("ducklake:postgres:dbname=lake user=etl password='Hunter2 secret'", "must not carry the password"),
    ("ducklake:postgres:postgresql://etl:Hunter2-secret@db/lake", "libpq key=value words"),
    ("ducklake:postgres:host=db user=etl", "dbname="),
    ("ducklake:postgres:dbname=lake 'Hunter2-secret'", "cannot read the connection words"),
    ("ducklake:metadata.ducklake", "a lake is named ducklake:postgres:"),
])
def test_a_bad_lake_uri_is_one_line_naming_the_cause_and_never_the_password(uri, cause):
    with pytest.raises(LakeConfigError) as caught:
        parse_lake_uri(uri, "/tmp/lake")
    message = str(caught.value)
    assert cause in message and "\n" not in message and "SMSLEDGER_WAREHOUSE" in message
    assert "Hunter2" not in message


def test_settings_read_a_lake_and_its_object_store_from_the_environment():
    lake_uri = "ducklake:postgres:dbname=lake host=db user=etl"
    settings = Settings.from_env({"SMSLEDGER_WAREHOUSE": lake_uri, "SMSLEDGER_LAKE_DATA_PATH": "s3://bucket/lake",
                                  "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "Hunter2-aws-secret",
                                  "AWS_REGION": "ap-guangzhou", "AWS_ENDPOINT_URL": "http://127.0.0.1:9000"},
                                 require_credentials=False)
    store = settings.warehouse.object_store
    assert (store.region, store.endpoint, store.use_ssl, store.url_style) == ("ap-guangzhou", "127.0.0.1:9000", False, "path")
    assert "Hunter2" not in repr(settings) and "AKIDEXAMPLE" not in repr(settings)
    refused = {
        (("SMSLEDGER_WAREHOUSE", "data/w.duckdb"), ("SMSLEDGER_LAKE_DATA_PATH", "/tmp/lake")): "SMSLEDGER_WAREHOUSE is a DuckDB file",
        (("SMSLEDGER_WAREHOUSE", lake_uri), ("SMSLEDGER_LAKE_DATA_PATH", "s3://bucket/lake")): "set AWS_ACCESS_KEY_ID",
    }
    for env, cause in refused.items():
        with pytest.raises(ConfigError) as caught:
            Settings.from_env(dict(env), require_credentials=False)
        assert cause in str(caught.value) and "\n" not in str(caught.value)


def test_redact_masks_passwords_in_conninfo_and_urls():
    assert redact('at "dbname=x password=abc user=y" and password=\'a b\'') == 'at "dbname=x password=*** user=y" and password=***'
    assert redact("postgresql://etl:abc@db/x") == "postgresql://etl:***@db/x"


def test_a_lake_connection_has_the_warehouse_session_and_keeps_rows_across_connections(lake_location):
    con = connect(lake_location)
    try:
        assert con.execute("select current_database()").fetchone() == ("lake",)
        # the macros of sql/ddl/macros.sql and UTC, as on a DuckDB file
        assert con.execute("select unix_seconds(1767225600123), current_setting('TimeZone')").fetchone() == (1767225600, "UTC")
        con.execute("create schema raw")
        con.execute("create table raw.t (day date, n bigint, extra json, loaded_at timestamptz not null default current_timestamp)")
        con.execute("""insert into raw.t (day, n, extra) values ('2026-01-05', 1, '{"a": 1}')""")
        assert lake.data_path_of(con) == lake_location.data_path
    finally:
        con.close()
    again = connect(LakeLocation(lake_location.conninfo))  # the data path recorded in the catalog
    try:
        day, n, a, loaded_at = again.execute("select day, n, extra->>'a', loaded_at from raw.t").fetchone()
        assert (day, n, a) == (dt.date(2026, 1, 5), 1, "1")
        assert abs(loaded_at - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
    finally:
        again.close()
    # The Parquet files and the catalog both exist: the folder was written to.
    assert os.path.isdir(lake_location.data_path)


def test_another_data_path_for_an_existing_lake_is_refused_in_one_line(lake_location, tmp_path):
    connect(lake_location).close()
    with pytest.raises(LakeConfigError) as caught:
        connect(LakeLocation(lake_location.conninfo, str(tmp_path / "elsewhere") + "/"))
    assert "does not match existing data path" in str(caught.value) and "\n" not in str(caught.value)


def test_a_wrong_password_is_one_line_that_shows_no_password(lake_location, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "Wrong-Hunter2-pw")
    with pytest.raises(LakeConfigError) as caught:
        connect(lake_location)
    message = str(caught.value)
    assert 'password authentication failed for user "smsledger"' in message
    assert "Hunter2" not in message and "\n" not in message
    monkeypatch.delenv("PGPASSWORD")
    with pytest.raises(LakeConfigError, match="no password supplied"):
        connect(lake_location)


def test_the_password_comes_from_a_service_file(lake_location, postgres, tmp_path, monkeypatch):
    words = dict(word.split("=", 1) for word in lake_location.conninfo.split())
    service = tmp_path / "pg_service.conf"
    service.write_text("[smsledger_lake]\n" + "".join(f"{k}={v}\n" for k, v in words.items())
                       + f"password={postgres.password}\n")
    service.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD")
    monkeypatch.setenv("PGSERVICEFILE", str(service))
    location = parse_lake_uri("ducklake:postgres:service=smsledger_lake", lake_location.data_path)
    con = connect(location)
    try:
        con.execute("create table main.t as select 42 as answer")
        assert con.execute("select answer from main.t").fetchone() == (42,)
        # what a query can see of the attached databases carries no password
        assert postgres.password not in str(con.execute("select * from duckdb_databases()").fetchall())
    finally:
        con.close()


def test_read_only_reads_the_lake_and_nothing_else(lake_location, tmp_path):
    writer = connect(lake_location)
    writer.execute("create schema marts")
    writer.execute("create table marts.delivery_daily as select date '2026-01-05' + i::int as day, i as delivered from range(10) r(i)")
    # a writer in the middle of a transaction does not block the reader, who sees the last commit
    writer.execute("begin")
    writer.execute("delete from marts.delivery_daily where day = date '2026-01-05'")
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text("not for queries\n")
    reader = connect(LakeLocation(lake_location.conninfo), read_only=True)
    try:
        assert reader.execute("select count(*), sum(delivered) from marts.delivery_daily").fetchone() == (10, 45)
        refused = {
            "insert into marts.delivery_daily values (date '2026-02-01', 1)": "read-only mode",
            "create table marts.x (a int)": "read-only mode",
            "delete from __ducklake_metadata_lake.public.ducklake_snapshot": "read-only mode",
            f"select * from read_csv('{secret_file}')": "file system operations are disabled",
            f"copy (select 1) to '{tmp_path / 'out.csv'}'": "file system operations are disabled",
            f"attach '{tmp_path / 'other.duckdb'}' as other": "file system operations are disabled",
            "set enable_external_access = true": "the configuration has been locked",
            "set lock_configuration = false": "the configuration has been locked",
        }
        for statement, cause in refused.items():
            with pytest.raises(duckdb.Error, match=cause):
                reader.execute(statement)
        assert not (tmp_path / "out.csv").exists()
        # The lock-down leaves the data path writable: COPY there succeeds (and could overwrite the
        # lake's own files), so `smsledger sql` must refuse every statement but a reading one.
        reader.execute(f"copy (select 1) to '{lake_location.data_path}x.csv'")
        assert os.path.exists(f"{lake_location.data_path}x.csv")
        # temp macros and tables of the session still work
        assert reader.execute("select unix_seconds(1767225600)").fetchone() == (1767225600,)
    finally:
        reader.close()
        writer.execute("rollback")
        writer.close()
