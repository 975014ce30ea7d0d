"""A lake whose data path is object storage (s3://): the httpfs extension from its PyPI package,
the credentials as a session secret that no error or query shows, read-only access limited to the
lake's prefix. The S3 service is moto's, on loopback; the catalog a real PostgreSQL server
(tests/postgres_support.py)."""

import duckdb
import postgres_support
import pytest

from pipelines.config import ConfigError, LakeConfigError, LakeLocation, ObjectStore, Settings
from pipelines.warehouse import lake
from pipelines.warehouse.db import connect

moto_server = pytest.importorskip("moto.server", reason="moto (a dev dependency) serves S3 on loopback for this test")
boto3 = pytest.importorskip("boto3")

# The fixtures of tests/postgres_support.py, visible to this module's tests.
lake_location = postgres_support.lake_location
postgres = postgres_support.postgres

BUCKET = "smsledger-lake"
SECRET = "Hunter2-s3-secret"


@pytest.fixture
def s3(monkeypatch):
    """An S3 service on a free loopback port with an empty bucket; its DuckDB secret options."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}", region_name="us-east-1",
                          aws_access_key_id="smsledger", aws_secret_access_key=SECRET)
    client.create_bucket(Bucket=BUCKET)
    # what Settings reads from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL
    store = Settings.from_env({"SMSLEDGER_WAREHOUSE": "ducklake:postgres:dbname=x", "SMSLEDGER_LAKE_DATA_PATH": f"s3://{BUCKET}/lake",
                               "AWS_ACCESS_KEY_ID": "smsledger", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_REGION": "us-east-1",
                               "AWS_ENDPOINT_URL": f"http://{host}:{port}"}, require_credentials=False).warehouse.object_store
    assert store == ObjectStore(key_id="smsledger", secret=SECRET, region="us-east-1", endpoint=f"{host}:{port}",
                                use_ssl=False, url_style="path")
    yield client, store
    server.stop()


def test_a_lake_on_object_storage_writes_reads_and_locks_down(lake_location, s3):
    client, store = s3
    location = LakeLocation(lake_location.conninfo, f"s3://{BUCKET}/lake/", store)
    writer = connect(location)
    try:
        writer.execute("create schema marts")
        writer.execute("create table marts.daily as select date '2026-01-01' + (i % 7)::int as day, i as n from range(100000) r(i)")
        writer.execute("begin")
        writer.execute("delete from marts.daily where day = date '2026-01-02'")
        writer.execute("insert into marts.daily select date '2026-01-02', -1 from range(10)")
        writer.execute("commit")
    finally:
        writer.close()
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys and all(k.startswith("lake/marts/daily/") and k.endswith(".parquet") for k in keys)

    reader = connect(LakeLocation(lake_location.conninfo, None, store), read_only=True)
    try:
        expected_sum = sum(range(100000)) - sum(i for i in range(100000) if i % 7 == 1) - 10
        assert reader.execute("select count(*), sum(n) from marts.daily").fetchone() == (100000 - 14286 + 10, expected_sum)
        for statement in (f"select * from read_csv('s3://{BUCKET}/elsewhere.csv')",
                          f"copy (select 1) to 's3://{BUCKET}/elsewhere.csv'"):
            with pytest.raises(duckdb.PermissionException, match="file system operations are disabled"):
                reader.execute(statement)
        # the secret is shown redacted to a query
        assert SECRET not in str(reader.execute("select * from duckdb_secrets()").fetchall())
        # COPY into the lake's own prefix passes the lock-down (smsledger sql must refuse it itself)
        reader.execute(f"copy (select 1) to 's3://{BUCKET}/lake/stray.csv'")
        assert client.head_object(Bucket=BUCKET, Key="lake/stray.csv")["ContentLength"] > 0
    finally:
        reader.close()


def test_object_store_options_that_duckdb_refuses_are_one_line_without_the_secret(lake_location):
    import duckdb as _duckdb

    con = _duckdb.connect()
    try:
        lake.load_extensions(con, object_store=True)
        with pytest.raises(LakeConfigError) as caught:
            lake._create_object_store_secret(con, {"key_id": "k", "secret": SECRET, "use_ssl": "maybe"})
        assert str(caught.value) == "the object-store options were refused by DuckDB (BinderException)"
        with pytest.raises(LakeConfigError, match="unknown object-store options"):
            lake._create_object_store_secret(con, {"password": SECRET})
    finally:
        con.close()


@pytest.mark.parametrize("env, cause", [
    ({"SMSLEDGER_LAKE_DATA_PATH": "s3://b/lake"}, "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"),
    ({"SMSLEDGER_LAKE_DATA_PATH": "s3://b/lake", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": SECRET,
      "AWS_ENDPOINT_URL": "ftp://minio:9000"}, "AWS_ENDPOINT_URL='ftp://minio:9000' must be http(s)://host[:port]"),
    ({"SMSLEDGER_LAKE_DATA_PATH": "gs://b/lake"}, "neither a folder nor an s3://bucket/prefix URL"),
])
def test_an_object_store_that_cannot_work_is_one_line_naming_the_variable(env, cause):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"SMSLEDGER_WAREHOUSE": "ducklake:postgres:dbname=lake host=db user=etl", **env},
                          require_credentials=False)
    assert cause in str(caught.value) and SECRET not in str(caught.value) and "\n" not in str(caught.value)
